"""Batched, resumable greedy VQA inference over cached records.

Batches are consecutive records in dataset order and chunks are whole batches, so a resumed run
feeds the model exactly the batches an uninterrupted run would and writes an identical file. Each
batch is answered in the experiment's answer mode (`vlmflow.core.answer_modes`) and decoding (free,
constrained to the record's candidates, or the candidates ranked by likelihood).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm
from transformers import PreTrainedModel, ProcessorMixin

from vlmflow.core.answer_modes import (
    RATIONALE_PROMPT,
    WITH_RATIONALE_PROMPT,
    check_mode,
    extract_answer,
    format_followed,
    user_prompt,
)
from vlmflow.core.prompts import encode_batch, generate_encoded
from vlmflow.core.records import Record
from vlmflow.core.resumable import ResumableJsonl
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


def _batches(records: Sequence[Record], size: int) -> Iterator[Sequence[Record]]:
    for start in range(0, len(records), size):
        yield records[start : start + size]


def fingerprint(model_path: str | Path, cache_path: str | Path, settings: GenerationSettings) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one for its rows to be reusable."""
    digest = hashlib.sha256(Path(cache_path).read_bytes()).hexdigest()
    return {"model": str(model_path), "data_sha256": digest, "settings": asdict(settings)}


def run_inference(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    records: Sequence[Record],
    output: str | Path,
    settings: GenerationSettings,
    resume_key: dict[str, Any],
) -> int:
    """Write one prediction row per record to `output`, resuming a previous partial run.

    Returns the number of rows that were already done when this run started.
    """
    check_settings(settings)
    writer = ResumableJsonl(output, resume_key, unit=settings.batch_size, total=len(records))
    done = len(writer.rows)
    todo = records[done:]
    chunk: list[dict[str, Any]] = []
    with tqdm(total=len(records), initial=done, desc=f"infer {Path(output).parent.name}", unit="q") as bar:
        for batch in _batches(todo, settings.batch_size):
            chunk.extend(answer_batch(model, processor, batch, settings))
            bar.update(len(batch))
            if len(chunk) >= settings.chunk_batches * settings.batch_size:
                writer.append(chunk)
                chunk = []
        writer.append(chunk)
    writer.finish()
    return done
