"""The text a tokenizer for the tiny model zoo is trained on.

Built from the generators' own templates and vocabularies, so every question and answer the
synthetic data can contain is covered and a tokenizer trained on it never meets an unseen word.
"""

from __future__ import annotations

from vlmflow.core.settings import DEFAULT_PROMPT
from vlmflow.synth import kvasir, scenes, swap_pairs, textvqa, vqav2

# The text every prompt carries besides the question: the chat templates' role names and default
# system message (Qwen2-VL, LLaVA-1.5) and the default instruction. It occurs once per prompt, so
# it is repeated to weigh with the questions: unweighted, BPE never merges it and each prompt
# spends about 40 more tokens (single bytes) on "system", "You are a helpful assistant." etc.
CHAT_SCAFFOLD: tuple[str, ...] = (
    "system",
    "You are a helpful assistant.",
    "user",
    "assistant",
    "USER:",
    "ASSISTANT:",
    DEFAULT_PROMPT.format(question="").strip(),
)
SCAFFOLD_WEIGHT = 50


def _vqav2() -> list[str]:
    (colour_q, _, _), (count_q, _, _) = vqav2.QUESTIONS["colour"], vqav2.QUESTIONS["count"]
    yesno_q, shape_q = vqav2.QUESTIONS["yesno"][0], vqav2.QUESTIONS["shape"][0]
    lines = [colour_q.format(shape=s) for s in scenes.SHAPES]
    lines += [count_q.format(shape=s) for s in scenes.SHAPES]
    lines += [yesno_q.format(colour=c, shape=s) for c in scenes.COLOURS for s in scenes.SHAPES]
    lines += [shape_q.format(colour=c) for c in scenes.COLOURS]
    return lines


def _textvqa() -> list[str]:
    return [*textvqa.WORD_QUESTIONS, textvqa.COLOUR_QUESTION, *textvqa.IMAGE_CLASSES]


def _swap_pairs() -> list[str]:
    objects = [f"{c} {s}" for c in scenes.COLOURS for s in scenes.SHAPES]
    return [
        template.format(a=a, b=b)
        for template in swap_pairs.TEMPLATES.values()
        for a in objects
        for b in objects
        if a.split()[0] != b.split()[0] and a.split()[1] != b.split()[1]
    ]


def _kvasir() -> list[str]:
    answers = [
        "polyp",
        "no",
        "yes",
        "not relevant",
        "none",
        "white",
        "red",
        "red; white",
        *(name for _, name in kvasir.PROCEDURES.values()),
        *kvasir.PROCEDURES,
        *kvasir.INSTRUMENTS,
        "; ".join(kvasir.INSTRUMENTS),
        *kvasir.SIZES,
        *kvasir.POLYP_TYPES,
        *scenes.GRID_NAMES,
        *(str(n) for n in range(4)),
    ]
    return [*kvasir.QUESTIONS, *answers]


def _answers() -> list[str]:
    """Every canonical VQAv2/TextVQA/swap answer with the spellings annotators vary it to."""
    canonical = [
        *scenes.COLOURS,
        *scenes.SHAPES,
        "yes",
        "no",
        *(str(n) for n in range(vqav2.MAX_COUNT + 1)),
        *(w.lower() for w in textvqa.WORDS),
        *swap_pairs.CATEGORIES,
    ]
    return [v for a in canonical for v in (a, *scenes.answer_variants(a))]


def corpus_lines() -> list[str]:
    """The data's lines, deduplicated, in a fixed order, then the weighted chat scaffold."""
    lines = _vqav2() + _textvqa() + _swap_pairs() + _kvasir() + _answers()
    return list(dict.fromkeys(lines)) + list(CHAT_SCAFFOLD) * SCAFFOLD_WEIGHT
