"""Closed questions: decode only a record's own candidates, or rank them by likelihood.

A candidate is the exact token sequence training supervises after the prompt
(`vlmflow.finetune.examples.prompt_and_target`): the answer as the chat template renders the assistant turn,
then the end-of-turn token. Constrained decoding and likelihood ranking both use these sequences,
so they agree with each other and with what fine-tuning taught the model to produce.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from PIL import Image
from transformers import PreTrainedModel, ProcessorMixin

from vlmflow.architectures.registry import architecture
from vlmflow.core.prompts import load_image, processor_inputs, prompt_and_target, render_prompt
from vlmflow.core.records import Record
from vlmflow.core.settings import GenerationSettings


def _targets(
    processor: ProcessorMixin,
    question: str,
    candidates: Sequence[str],
    settings: GenerationSettings,
) -> list[str]:
    return [prompt_and_target(processor, question, c, settings)[1] for c in candidates]


def candidate_sequences(
    processor: ProcessorMixin,
    question: str,
    candidates: Sequence[str],
    settings: GenerationSettings,
) -> list[list[int]]:
    """Per candidate, the token ids the model must generate to give it as its answer.

    The target is tokenized on its own, so a sequence is what decoding emits after the prompt;
    LLaVA's targets keep the leading space of " red</s>", Qwen2-VL's are "red<|im_end|>".
    """
    targets = _targets(processor, question, candidates, settings)
    return [processor.tokenizer(t, add_special_tokens=False)["input_ids"] for t in targets]


class CandidateTrie:
    """Prefix tree over candidate sequences: which next tokens keep a prefix on a candidate.

    Every sequence ends with `eos_id` (and has it nowhere else), so reaching eos completes a
    candidate; after that only eos or `pad_id` may follow, which is what batched generation feeds
    a finished row.
    """

    def __init__(self, sequences: Iterable[Sequence[int]], eos_id: int, pad_id: int | None = None) -> None:
        self.eos_id = eos_id
        self.end_ids = [eos_id] if pad_id is None or pad_id == eos_id else [eos_id, pad_id]
        self.root: dict[int, dict] = {}
        self.max_length = 0
        for sequence in sequences:
            sequence = list(sequence)
            if not sequence or sequence[-1] != eos_id or eos_id in sequence[:-1]:
                raise ValueError(f"candidate {sequence} must end with eos {eos_id}, and only there")
            node = self.root
            for token in sequence:
                node = node.setdefault(token, {})
            self.max_length = max(self.max_length, len(sequence))
        if not self.root:
            raise ValueError("a candidate trie needs at least one candidate")

    def allowed(self, prefix: Sequence[int]) -> list[int]:
        """The tokens that may follow `prefix` (the tokens generated so far)."""
        node = self.root
        for position, token in enumerate(prefix):
            if token not in node:
                raise ValueError(f"generated tokens {list(prefix)} left every candidate")
            if token == self.eos_id:  # a complete candidate: generation may only end or pad
                if any(t not in self.end_ids for t in prefix[position + 1 :]):
                    raise ValueError(f"generated tokens {list(prefix)} go on after a candidate")
                return list(self.end_ids)
            node = node[token]
        return list(node)


@torch.inference_mode()
def constrained_generate(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    records: Sequence[Record],
    settings: GenerationSettings,
) -> list[str]:
    """Greedy answers for one batch, each row restricted to its own record's candidates.

    Rows without candidates generate freely (up to `settings.max_new_tokens`), as in
    `generate_batch`. Answers are decoded and stripped, so LLaVA's " red" comes back as "red".
    """
    architecture(model).require("scoring")
    tokenizer = processor.tokenizer
    pad_id = model.generation_config.pad_token_id
    tries = [
        CandidateTrie(
            candidate_sequences(processor, r.question, r.candidates, settings),
            tokenizer.eos_token_id,
            tokenizer.pad_token_id if pad_id is None else pad_id,
        )
        if r.candidates
        else None
        for r in records
    ]
    prompts = [render_prompt(processor, r.question, settings) for r in records]
    images = [load_image(r) for r in records]
    inputs = processor_inputs(model, processor, prompts, images, "left")  # row i's answer is ids[i, n:]
    prompt_length = inputs["input_ids"].shape[1]
    vocabulary = list(range(model.config.get_text_config().vocab_size))

    def allowed(row: int, input_ids: torch.Tensor) -> list[int]:
        trie = tries[row]
        return vocabulary if trie is None else trie.allowed(input_ids[prompt_length:].tolist())

    output = model.generate(
        **inputs,
        max_new_tokens=max(settings.max_new_tokens if t is None else t.max_length for t in tries),
        do_sample=False,
        prefix_allowed_tokens_fn=allowed,
    )
    answers = processor.batch_decode(output[:, prompt_length:], skip_special_tokens=True)
    return [answer.strip() for answer in answers]


def _score_pairs(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    prompts: list[str],
    images: list[Image.Image],
    targets: list[str],
) -> list[float]:
    """Summed log-probability of each target's tokens after its prompt, in one forward pass.

    Rows are right-padded prompt + target texts (as `sft.collate` builds training batches), and
    only the trailing positions that predict a target token get logits.
    """
    tokenizer = processor.tokenizer
    sequences = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in targets]
    inputs = processor_inputs(model, processor, [p + t for p, t in zip(prompts, targets)], images, "right")
    ends = inputs["attention_mask"].sum(dim=1).tolist()
    starts = [end - len(sequence) for end, sequence in zip(ends, sequences)]
    width = inputs["input_ids"].shape[1]
    keep = width - min(starts) + 1  # the logits at position p predict the token at p + 1
    log_probs = model(**inputs, logits_to_keep=keep).logits.float().log_softmax(dim=-1)
    scores = []
    for row, (start, end, sequence) in enumerate(zip(starts, ends, sequences)):
        if inputs["input_ids"][row, start:end].tolist() != sequence:
            raise ValueError(
                f"candidate tokens {sequence} are not a suffix of the tokenized prompt + candidate "
                "(the tokenizer merges across the boundary)"
            )
        predicted_at = torch.arange(start - 1, end - 1, device=log_probs.device) - (width - keep)
        tokens = torch.tensor(sequence, device=log_probs.device)
        scores.append(log_probs[row, predicted_at, tokens].sum().item())
    return scores


@torch.inference_mode()
def rank_candidates(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    records: Sequence[Record],
    settings: GenerationSettings,
) -> list[tuple[str, list[float]]]:
    """Per record, the most likely candidate and every candidate's summed log-likelihood.

    A candidate's likelihood covers its answer tokens and the end-of-turn token, so one that is a
    prefix of another ("paris" vs "paris is") is scored as a whole answer, not as the other's start.
    All (record, candidate) pairs of `settings.batch_size` records share one forward pass; ties
    go to the first candidate.
    """
    architecture(model).require("scoring")
    ranked = []
    for first in range(0, len(records), settings.batch_size):
        chunk = records[first : first + settings.batch_size]
        prompts, images, targets = [], [], []
        for record in chunk:
            if not record.candidates:
                raise ValueError(f"question {record.question_id}: no candidates to rank")
            prompt, image = render_prompt(processor, record.question, settings), load_image(record)
            for target in _targets(processor, record.question, record.candidates, settings):
                prompts.append(prompt)
                images.append(image)
                targets.append(target)
        scores = _score_pairs(model, processor, prompts, images, targets)
        for record in chunk:
            count = len(record.candidates)
            own, scores = scores[:count], scores[count:]
            ranked.append((record.candidates[max(range(count), key=own.__getitem__)], own))
    return ranked
