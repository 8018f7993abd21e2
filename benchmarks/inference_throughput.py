"""Inference throughput: vlmflow's batched engine against a per-sample `generate()` loop, side by
side in one run.

The research seeds and VLMEvalKit answer one question at a time: build the chat, encode one image,
`generate()`, decode. vlmflow's `run_inference` answers left-padded batches end to end (answer
post-processing and durable chunk writes included). Both on the same model, questions and greedy
settings; the raw outputs are compared question by question at every batch size. Repeats are
interleaved (per-sample, then each batch size) so drift in machine load hits all paths alike; the
median samples/s is reported.

    python benchmarks/inference_throughput.py --model resources/zoo/qwen2vl_guide/samples-96000 \
        --cache results/cache/vqav2_val.jsonl --threads 2
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import PreTrainedModel, ProcessorMixin

from vlmflow.core.io import read_jsonl, write_json
from vlmflow.core.models import load_vlm
from vlmflow.core.prompts import build_messages, load_image
from vlmflow.core.records import Record, read_records
from vlmflow.core.settings import GenerationSettings
from vlmflow.vqa.inference import fingerprint, run_inference

TRAINED = Path("resources/zoo/qwen2vl_guide/samples-96000")


def per_sample(
    model: PreTrainedModel, processor: ProcessorMixin, records: Sequence[Record], settings: GenerationSettings
) -> list[str]:
    """The seeds' loop: one chat, one image, one `generate()` per question; decoded like our engine."""
    raws = []
    for record in records:
        messages = build_messages(record.question, settings)
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = processor(text=[text], images=[load_image(record)], return_tensors="pt").to(model.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        with torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=settings.max_new_tokens, do_sample=False)
        raws += processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return raws


def batched(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    records: Sequence[Record],
    settings: GenerationSettings,
    resume_key: dict[str, Any],
) -> list[str]:
    """The real engine end to end into a fresh output file; returns the raw outputs it wrote."""
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / f"batch{settings.batch_size}" / "predictions.jsonl"
        run_inference(model, processor, records, output, settings, resume_key)
        return [row["raw_output"] for row in read_jsonl(output)]


def timed(fn: Callable[[], list[str]], cuda: bool) -> tuple[float, list[str]]:
    """Wall seconds of one call (GPU work finished on both ends) and what it returned."""
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    raws = fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, raws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(TRAINED))
    parser.add_argument("--cache", default="results/cache/vqav2_val.jsonl")
    parser.add_argument("--questions", type=int, default=64, help="the first N records of the cache")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--out", default="benchmarks/results/inference_throughput.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, processor = load_vlm(args.model, device=args.device)
    cuda = model.device.type == "cuda"
    records = read_records(args.cache)[: args.questions]
    base = GenerationSettings(max_new_tokens=args.max_new_tokens, chunk_batches=4)

    # Warm-up: the first calls pay for lazy initialisation (kernels, allocator, tokenizer caches).
    per_sample(model, processor, records[:2], base)
    warm = replace(base, batch_size=2)
    batched(model, processor, records[:2], warm, fingerprint(args.model, args.cache, warm))

    single_runs: list[float] = []
    batch_runs: dict[int, list[float]] = {b: [] for b in args.batch_sizes}
    outputs: dict[int, list[list[str]]] = {b: [] for b in args.batch_sizes}
    reference: list[str] = []
    for _ in range(args.repeats):
        seconds, reference = timed(partial(per_sample, model, processor, records, base), cuda)
        single_runs.append(len(records) / seconds)
        for b in args.batch_sizes:
            settings = replace(base, batch_size=b)
            key = fingerprint(args.model, args.cache, settings)
            seconds, raws = timed(partial(batched, model, processor, records, settings, key), cuda)
            batch_runs[b].append(len(records) / seconds)
            outputs[b].append(raws)

    single = statistics.median(single_runs)
    rows = []
    for b in args.batch_sizes:
        differing = [i for i, want in enumerate(reference) if any(raws[i] != want for raws in outputs[b])]
        for i in differing[:3]:
            print(
                f"batch {b}, question {records[i].question_id}: per-sample {reference[i]!r}, batched "
                f"{[raws[i] for raws in outputs[b]]!r}"
            )
        speed = statistics.median(batch_runs[b])
        rows.append(
            {
                "batch_size": b,
                "samples_per_s": speed,
                "runs": batch_runs[b],
                "ratio": speed / single,
                "mismatches": len(differing),
            }
        )
    device = f"cuda ({torch.cuda.get_device_name(model.device)})" if cuda else f"cpu ({args.threads} threads)"
    result = {
        "model": args.model,
        "device": device,
        "machine": platform.machine(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "questions": len(records),
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "per_sample": {"samples_per_s": single, "runs": single_runs},
        "batched": rows,
        "best_ratio": max(row["ratio"] for row in rows),
    }
    write_json(args.out, result)
    print(f"\ngreedy, {len(records)} questions, {args.max_new_tokens} new tokens, {device}, median of {args.repeats}")
    print(f"per-sample generate loop: {single:.2f} q/s")
    print("| batch | q/s | vs per-sample | mismatches |\n|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['batch_size']} | {row['samples_per_s']:.2f} | {row['ratio']:.2f}x | {row['mismatches']} |")
    print(json.dumps(result, indent=2))
    mismatched = {row["batch_size"]: row["mismatches"] for row in rows if row["mismatches"]}
    if mismatched:
        raise SystemExit(f"raw outputs differ from the per-sample loop (batch size: questions): {mismatched}")


if __name__ == "__main__":
    main()
