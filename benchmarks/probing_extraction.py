"""Hidden-state extraction: one batched prefill with layer hooks against the seed's approach, side
by side in one run.

The seed's extractors register a hook on every decoder layer and call `generate()` one question at
a time, keeping the prefill's last token (`hidden.shape[1] > 1`). vlmflow runs one left-padded
prefill per batch that stops after the deepest requested layer. Both on the same model and
questions; the features are asserted equal (to float tolerance) before anything is timed.

    python benchmarks/probing_extraction.py --model resources/zoo/qwen2vl_guide/samples-96000 \
        --cache results/cache/swap_val.jsonl --threads 2
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch

from vlmflow.core.io import write_json
from vlmflow.core.models import load_vlm
from vlmflow.core.prompts import encode_batch
from vlmflow.core.records import read_records
from vlmflow.core.settings import GenerationSettings
from vlmflow.probing.extraction import hooked_layers, last_token_states

SETTINGS = GenerationSettings()


def seed_style(model, processor, records, max_new_tokens: int) -> np.ndarray:
    """Per question: hooks on every layer, generate(), keep the prefill's last token of each layer."""
    _, layers = hooked_layers(model)
    captured: dict[int, torch.Tensor] = {}

    def hook(index):
        def keep(_module, _args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            if hidden.shape[1] > 1:
                captured[index] = hidden[:, -1, :].detach().cpu().float()

        return keep

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    rows = []
    try:
        for record in records:
            captured.clear()
            with torch.inference_mode():
                model.generate(
                    **encode_batch(model, processor, [record], SETTINGS), max_new_tokens=max_new_tokens, do_sample=False
                )
            rows.append(torch.stack([captured[i][0] for i in range(len(layers))]).numpy())
    finally:
        for handle in handles:
            handle.remove()
    return np.stack(rows)  # (questions, layers, hidden)


def batched(model, processor, records, batch_size: int) -> np.ndarray:
    _, layers = hooked_layers(model)
    parts = []
    for start in range(0, len(records), batch_size):
        states = last_token_states(
            model, dict(encode_batch(model, processor, records[start : start + batch_size], SETTINGS)), None
        )
        parts.append(np.stack([states[i] for i in range(len(layers))], axis=1))
    return np.concatenate(parts)


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--cache", required=True)
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=20, help="the seed generates 20 tokens")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/probing_extraction.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, processor = load_vlm(args.model)
    records = read_records(args.cache)[: args.questions]
    ours = batched(model, processor, records, args.batch_size)
    theirs = seed_style(model, processor, records, args.max_new_tokens)
    np.testing.assert_allclose(ours, theirs, atol=1e-3, rtol=1e-3)
    t_ours = timed(lambda: batched(model, processor, records, args.batch_size), args.repeats)
    t_seed = timed(lambda: seed_style(model, processor, records, args.max_new_tokens), args.repeats)
    result = {
        "model": args.model,
        "device": str(model.device) if model.device.type == "cuda" else f"cpu ({args.threads} threads)",
        "machine": platform.machine(),
        "torch": torch.__version__,
        "questions": len(records),
        "layers": ours.shape[1],
        "max_abs_difference": float(np.abs(ours - theirs).max()),
        "batched_prefill_samples_per_s": len(records) / t_ours,
        "seed_generate_with_hooks_samples_per_s": len(records) / t_seed,
        "ratio": t_seed / t_ours,
    }
    write_json(args.out, result)
    print(
        f"hidden states of {len(records)} questions, {ours.shape[1]} layers, median of {args.repeats}: "
        f"batched prefill {result['batched_prefill_samples_per_s']:.1f} q/s, seed-style generate with hooks "
        f"{result['seed_generate_with_hooks_samples_per_s']:.1f} q/s, ratio {result['ratio']:.1f}x "
        f"(max |difference| {result['max_abs_difference']:.2e})"
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
