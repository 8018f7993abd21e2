"""Supervised fine-tuning examples with answer-only labels.

The sequence trained on is exactly the inference-time prompt (the chat template with the
generation prompt, as `vlmflow.core.prompts` builds it) followed by the answer and the end-of-turn
token. Every label is -100 except the answer tokens and the end-of-turn token, so the model learns
to answer, not to predict the system prompt, the question or the image tokens.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from transformers import ProcessorMixin

from vlmflow.architectures.base import Architecture
from vlmflow.core.prompts import load_image, processor_batch, prompt_and_target
from vlmflow.core.records import Record
from vlmflow.core.settings import GenerationSettings
from vlmflow.data.vqa_metric import normalize_answer

IGNORE_INDEX = -100


def training_answer(record: Record) -> str:
    """The answer trained on: the consensus of the annotators after VQA normalisation (like VQAv2's
    multiple_choice_answer), in its most frequent raw spelling; a single answer as it is."""
    if len(record.answers) == 1:
        return record.answers[0]
    normalised = [normalize_answer(a) for a in record.answers]
    consensus = Counter(normalised).most_common(1)[0][0]
    spellings = Counter(a.strip() for a, n in zip(record.answers, normalised) if n == consensus)
    return spellings.most_common(1)[0][0]


def collate(
    arch: Architecture, processor: ProcessorMixin, records: Sequence[Record], settings: GenerationSettings
) -> dict[str, torch.Tensor]:
    """A right-padded training batch of prompt + answer with answer-only `labels`."""
    tokenizer = processor.tokenizer
    pairs = [prompt_and_target(processor, r.question, training_answer(r), settings) for r in records]
    prompts, targets = [p for p, _ in pairs], [t for _, t in pairs]
    texts = [p + t for p, t in zip(prompts, targets)]
    batch = processor_batch(arch, processor, texts, [load_image(r) for r in records], "right")
    labels = torch.full_like(batch["input_ids"], IGNORE_INDEX)
    for row, (record, target) in enumerate(zip(records, targets)):
        answer_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
        end = int(batch["attention_mask"][row].sum())
        start = end - len(answer_ids)
        if batch["input_ids"][row, start:end].tolist() != answer_ids:
            raise ValueError(
                f"question {record.question_id}: the answer tokens are not a suffix of the tokenized "
                "prompt + answer (the tokenizer merges across the boundary)"
            )
        labels[row, start:end] = batch["input_ids"][row, start:end]
    batch["labels"] = labels
    return dict(batch)


def label_report(
    processor: ProcessorMixin, batch: dict[str, torch.Tensor], question_ids: Sequence[str]
) -> list[dict[str, Any]]:
    """Per sample: the supervised positions, their decoded text and the share of masked tokens."""
    rows = []
    for row, qid in enumerate(question_ids):
        labels = batch["labels"][row]
        length = int(batch["attention_mask"][row].sum())
        positions = (labels != IGNORE_INDEX).nonzero().flatten().tolist()
        rows.append(
            {
                "question_id": qid,
                "supervised_positions": positions,
                "supervised_text": processor.tokenizer.decode(labels[positions]),
                "sequence_length": length,
                "mask_ratio": 1 - len(positions) / length,
            }
        )
    return rows
