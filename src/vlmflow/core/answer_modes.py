"""Answer modes: how the model is asked, and how its short answer is read back.

The reasoning ablations of the guided-pruning seed compare four ways of asking one question:

- `normal`: the experiment's own prompt (by default "Answer ... using a single word or phrase").
- `prompt`: a chain-of-thought instruction in one pass; the answer is read from an "Answer:" line.
- `two_pass`: pass one writes a short rationale, pass two answers with the rationale in the prompt.
- `explicit_cot`: asks for "Reasoning: ... Answer: ..." and records whether the output kept it.

Every mode keeps the raw output; `format_ok` says whether the output had the shape the mode asked
for (a short answer, an "Answer:" line, or the Reasoning/Answer pair), so format adherence is a
metric of its own and not hidden inside accuracy.
"""

from __future__ import annotations

import re

MODES = ("normal", "prompt", "two_pass", "explicit_cot")

COT_PROMPT = (
    "{question}\nThink step by step, then give the final answer as a single word or phrase on a "
    'last line that starts with "Answer:".'
)
EXPLICIT_COT_PROMPT = (
    "{question}\nReply in exactly this format:\nReasoning: <one or two sentences>\nAnswer: <a single word or phrase>"
)
RATIONALE_PROMPT = "{question}\nDescribe briefly what in the image answers the question."
WITH_RATIONALE_PROMPT = "{question}\nNotes: {rationale}\nAnswer the question using a single word or phrase."
SHORT_ANSWER_WORDS = 5  # a "normal" answer longer than this did not follow the instruction

_THINK = re.compile(r"<think>.*?(</think>|$)", flags=re.IGNORECASE | re.DOTALL)
_ANSWER_LINE = re.compile(r"^\s*(?:final\s+)?answer\s*:\s*(.*)$", flags=re.IGNORECASE | re.MULTILINE)
_EXPLICIT = re.compile(r"reasoning\s*:\s*\S.*?\n\s*answer\s*:\s*\S", flags=re.IGNORECASE | re.DOTALL)
_TRAILING = " \t.,;:!\"'`"


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown answer mode {mode!r}; choose one of {', '.join(MODES)}")


def user_prompt(mode: str, default_prompt: str) -> str:
    """The user-turn template of a one-pass mode (`two_pass` uses its two templates instead)."""
    check_mode(mode)
    return {"prompt": COT_PROMPT, "explicit_cot": EXPLICIT_COT_PROMPT}.get(mode, default_prompt)


def strip_thinking(raw: str) -> str:
    """Drop <think>...</think> blocks (and an unclosed one running to the end)."""
    return _THINK.sub("", raw)


def extract_answer(raw: str) -> str:
    """The short answer in a raw generation.

    The text after the last "Answer:" line if there is one (CoT formats), else the first non-empty
    line; thinking blocks are ignored, and trailing punctuation and quotes are stripped.
    """
    text = strip_thinking(raw)
    labelled = [m.group(1) for m in _ANSWER_LINE.finditer(text) if m.group(1).strip()]
    if labelled:
        answer = labelled[-1]
    else:
        answer = next((line for line in text.splitlines() if line.strip()), "")
    return answer.strip().strip(_TRAILING).strip()


def format_followed(mode: str, raw: str) -> bool:
    """Whether the output has the shape the mode asked for."""
    check_mode(mode)
    text = strip_thinking(raw).strip()
    if mode == "prompt":
        return any(m.group(1).strip() for m in _ANSWER_LINE.finditer(text))
    if mode == "explicit_cot":
        return bool(_EXPLICIT.search(text))
    lines = [line for line in text.splitlines() if line.strip()]
    return len(lines) == 1 and len(lines[0].split()) <= SHORT_ANSWER_WORDS
