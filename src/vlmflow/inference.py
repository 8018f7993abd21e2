"""Batched, resumable greedy VQA inference over cached records.

Batches are consecutive records in dataset order and chunks are whole batches, so a resumed run
feeds the model exactly the batches an uninterrupted run would and writes an identical file.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm.auto import tqdm
from transformers import PreTrainedModel, ProcessorMixin

from vlmflow.errors import InputError
from vlmflow.records import Record
from vlmflow.resumable import ResumableJsonl
from vlmflow.settings import GenerationSettings


def build_messages(question: str, settings: GenerationSettings) -> list[dict[str, Any]]:
    """A chat in the processor's own format: optional system turn, user turn with image + text."""
    messages: list[dict[str, Any]] = []
    if settings.system_prompt:
        messages.append({"role": "system", "content": [{"type": "text", "text": settings.system_prompt}]})
    text = settings.prompt.format(question=question)
    messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]})
    return messages


def parse_answer(raw: str) -> str:
    """The short answer in a raw generation: first non-empty line, without an "Answer:" label."""
    for line in raw.strip().splitlines():
        line = re.sub(r"^\s*(final\s+)?answer\s*:\s*", "", line.strip(), flags=re.IGNORECASE)
        if line:
            return line.strip()
    return ""


def load_image(record: Record) -> Image.Image:
    try:
        with Image.open(record.image) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as err:
        raise InputError(record.image, f"cannot read image ({err})", record=record.question_id, field="image") from err


@torch.inference_mode()
def generate_batch(
    model: PreTrainedModel, processor: ProcessorMixin, records: Sequence[Record], settings: GenerationSettings
) -> list[str]:
    """Greedy generation for one left-padded batch; returns the decoded new text per record."""
    texts = [
        processor.apply_chat_template(build_messages(r.question, settings), add_generation_prompt=True, tokenize=False)
        for r in records
    ]
    images = [load_image(r) for r in records]
    inputs = processor(text=texts, images=images, padding=True, return_tensors="pt").to(model.device)
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    output = model.generate(**inputs, max_new_tokens=settings.max_new_tokens, do_sample=False)
    new_tokens = output[:, inputs["input_ids"].shape[1] :]
    return processor.batch_decode(new_tokens, skip_special_tokens=True)


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
    writer = ResumableJsonl(output, resume_key, unit=settings.batch_size, total=len(records))
    done = len(writer.rows)
    todo = records[done:]
    chunk: list[dict[str, Any]] = []
    with tqdm(total=len(records), initial=done, desc=f"infer {Path(output).parent.name}", unit="q") as bar:
        for batch in _batches(todo, settings.batch_size):
            for record, raw in zip(batch, generate_batch(model, processor, batch, settings)):
                chunk.append(
                    {
                        "question_id": record.question_id,
                        "question": record.question,
                        "prediction": parse_answer(raw),
                        "raw_output": raw,
                    }
                )
            bar.update(len(batch))
            if len(chunk) >= settings.chunk_batches * settings.batch_size:
                writer.append(chunk)
                chunk = []
        writer.append(chunk)
    writer.finish()
    return done
