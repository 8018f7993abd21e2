"""Batched, resumable greedy VQA inference over cached records.

Batches are consecutive records in dataset order and chunks are whole batches, so a resumed run
feeds the model exactly the batches an uninterrupted run would and writes an identical file. Each
batch is answered in the experiment's answer mode (`vlmflow.core.answer_modes`) and decoding (free,
constrained to the record's candidates, or the candidates ranked by likelihood).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, ProcessorMixin

from vlmflow.core.answer_modes import (
    RATIONALE_PROMPT,
    WITH_RATIONALE_PROMPT,
    check_mode,
    extract_answer,
    format_followed,
    user_prompt,
)
from vlmflow.core.io import folder_signature
from vlmflow.core.prompts import encode_batch, generate_encoded
from vlmflow.core.records import Record
from vlmflow.core.resumable import ResumableJsonl, answer_in_batches
from vlmflow.core.settings import GenerationSettings
from vlmflow.vqa.constrained import constrained_generate, rank_candidates

DECODINGS = ("free", "constrained", "likelihood")


def generate_batch(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    records: Sequence[Record],
    settings: GenerationSettings,
    user_texts: Sequence[str] | None = None,
    max_new_tokens: int | None = None,
) -> list[str]:
    """Greedy generation for one left-padded batch; returns the decoded new text per record.

    `user_texts` replaces the settings' prompt per record (answer modes build their own)."""
    inputs = encode_batch(model, processor, records, settings, user_texts)
    return generate_encoded(model, processor, inputs, max_new_tokens or settings.max_new_tokens)


def check_settings(settings: GenerationSettings) -> None:
    check_mode(settings.mode)
    if settings.decoding not in DECODINGS:
        raise ValueError(f"unknown decoding {settings.decoding!r}; choose one of {', '.join(DECODINGS)}")
    if settings.decoding != "free" and settings.mode != "normal":
        raise ValueError(f"decoding {settings.decoding!r} chooses among candidates: it needs mode 'normal'")


def answer_batch(
    model: PreTrainedModel, processor: ProcessorMixin, records: Sequence[Record], settings: GenerationSettings
) -> list[dict[str, Any]]:
    """The prediction row of each record: parsed answer, raw output, format adherence, and the
    rationale (two_pass) or the candidates' log-likelihoods (likelihood decoding)."""
    extra: list[dict[str, Any]] = [{} for _ in records]
    if settings.decoding != "free":
        if settings.decoding == "constrained":  # rows without candidates generate freely
            raws = constrained_generate(model, processor, records, settings)
        else:  # rank the closed questions' candidates, generate the open ones
            closed = [i for i, r in enumerate(records) if r.candidates]
            open_ = [i for i, r in enumerate(records) if not r.candidates]
            raws = [""] * len(records)
            if closed:
                ranked = rank_candidates(model, processor, [records[i] for i in closed], settings)
                for i, (choice, scores) in zip(closed, ranked):
                    raws[i] = choice
                    extra[i] = {"candidate_scores": dict(zip(records[i].candidates, scores))}
            if open_:
                texts = generate_batch(model, processor, [records[i] for i in open_], settings)
                for i, text in zip(open_, texts):
                    raws[i] = text
    elif settings.mode == "two_pass":
        asks = [RATIONALE_PROMPT.format(question=r.question) for r in records]
        rationales = generate_batch(model, processor, records, settings, asks, settings.reasoning_tokens)
        rationales = [" ".join(text.split()) for text in rationales]
        answers = [
            WITH_RATIONALE_PROMPT.replace("{rationale}", why).replace("{question}", r.question)
            for r, why in zip(records, rationales)
        ]
        raws = generate_batch(model, processor, records, settings, answers)
        extra = [{"rationale": why} for why in rationales]
    else:
        template = user_prompt(settings.mode, settings.prompt)
        budget = settings.max_new_tokens if settings.mode == "normal" else settings.reasoning_tokens
        asks = [template.format(question=r.question) for r in records]
        raws = generate_batch(model, processor, records, settings, asks, budget)
    return [
        {
            "question_id": r.question_id,
            "question": r.question,
            "prediction": extract_answer(raw),
            "raw_output": raw,
            "format_ok": format_followed(settings.mode, raw),
            **more,
        }
        for r, raw, more in zip(records, raws, extra)
    ]


def fingerprint(model_path: str | Path, cache_path: str | Path, settings: GenerationSettings) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one for its rows to be reusable: the
    model's files (not just its path), the data's digest and the settings."""
    digest = hashlib.sha256(Path(cache_path).read_bytes()).hexdigest()
    return {"model": folder_signature(model_path), "data_sha256": digest, "settings": asdict(settings)}


def run_inference(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    records: Sequence[Record],
    output: str | Path,
    settings: GenerationSettings,
    resume_key: dict[str, Any],
    log: logging.Logger | None = None,
) -> int:
    """Write one prediction row per record to `output`, resuming a previous partial run; a batch
    that runs out of device memory is halved (`answer_in_batches`).

    Returns the number of rows that were already done when this run started.
    """
    check_settings(settings)
    ids = [r.question_id for r in records]
    writer = ResumableJsonl(output, resume_key, unit=settings.batch_size, expected_ids=ids)
    done = len(writer.rows)

    def answer(batch: Sequence[Record], batch_size: int) -> list[dict[str, Any]]:
        return answer_batch(model, processor, batch, replace(settings, batch_size=batch_size))

    if settings.decoding != "free" and log is not None:
        open_types = Counter(r.source.get("inferred_type", "untyped") for r in records if not r.candidates)
        if open_types:
            log.warning(
                "%d of %d questions have no candidates and are answered by free generation (%s); "
                "question_types rules in the dataset's config can give them some (docs/vqa.md, Question types)",
                sum(open_types.values()),
                len(records),
                ", ".join(f"{qtype}: {n}" for qtype, n in open_types.most_common()),
            )
    answer_in_batches(writer, records, answer, settings.chunk_batches, f"infer {Path(output).parent.name}", log)
    writer.finish()
    return done
