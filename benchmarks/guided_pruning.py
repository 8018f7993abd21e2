"""Guided pruning: the decode model's prefill at keep 0.4 and 0.09 against unpruned, and a batched
guided run against batch size 1, side by side in one run.

Both models are Qwen2-VL checkpoints built from configs (random weights; speed does not depend on
them) with one shared vision-tower config, at an image size that gives `--image-size`/28 squared
visual tokens (448 px: 256). Prefill: median wall time of a batch's prefill plus first token at
K = 0 (SGL's setting), the KV cache it leaves, and the peak memory it takes (CUDA: peak allocated;
CPU: peak resident-set growth of a fresh process, sampled every millisecond). Throughput: the
whole guided pipeline (guide generation with attention, consistency re-score, decode at one keep
ratio) on the same questions, answers asserted identical across batch sizes.

    python benchmarks/guided_pruning.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch

from vlmflow.core.io import write_json
from vlmflow.core.models import load_vlm
from vlmflow.core.prompts import encode_batch
from vlmflow.core.records import Record
from vlmflow.core.settings import GenerationSettings, PruningSettings
from vlmflow.guided.pruning import generate, prepare_inputs
from vlmflow.guided.runner import PrunedRunner, load_pair
from vlmflow.synth.corpus import corpus_lines
from vlmflow.synth.scenes import COLOURS, PALETTE, SHAPES, draw_shape, new_canvas
from vlmflow.zoo.build import build_checkpoint

VISION = {"depth": 4, "embed_dim": 128, "num_heads": 4, "mlp_ratio": 4}


def build_models(root: Path, image_size: int, decode_hidden: int, decode_layers: int) -> tuple[Path, Path]:
    lines = corpus_lines()
    common = {"family": "qwen2_vl", "vocab_size": 512, "image_size": image_size, "vision": VISION}
    guide = {
        **common,
        "seed": 0,
        "text": {
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
        },
    }
    decode = {
        **common,
        "seed": 1,
        "text": {
            "hidden_size": decode_hidden,
            "intermediate_size": 2 * decode_hidden,
            "num_hidden_layers": decode_layers,
            "num_attention_heads": decode_hidden // 64,
            "num_key_value_heads": 2,
        },
    }
    build_checkpoint(guide, lines, root / "guide")
    build_checkpoint(decode, lines, root / "decode")
    return root / "guide", root / "decode"


def make_records(root: Path, n: int, image_size: int) -> list[Record]:
    rng = random.Random(0)
    records = []
    for i in range(n):
        image, draw = new_canvas(image_size)
        colour, shape = rng.choice(COLOURS), rng.choice(SHAPES)
        x, y = rng.randrange(0, image_size // 2), rng.randrange(0, image_size // 2)
        draw_shape(draw, shape, PALETTE[colour], (x, y, x + image_size // 4, y + image_size // 4))
        path = root / f"{i:03d}.png"
        image.save(path)
        records.append(Record(str(i), str(path), f"What colour is the {shape}?", [colour] * 10, "bench"))
    return records


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def prefill_once(decode: str, records: list[Record], keep: float, threads: int, repeats: int, queue) -> None:
    """In a fresh process: median prefill time, KV cache size and peak memory at one keep ratio."""
    torch.set_num_threads(threads)
    model, processor = load_vlm(decode)
    language = prepare_inputs(model, dict(encode_batch(model, processor, records, GenerationSettings())))
    scores = [torch.rand(n) for n in language.visual_counts]
    ids = {"eos_token_ids": [processor.tokenizer.eos_token_id], "pad_token_id": processor.tokenizer.pad_token_id}
    cuda = model.device.type == "cuda"

    def run():
        out = generate(model, language, max_new_tokens=1, keep_ratio=keep, prune_at=0, scores=scores, **ids)
        if cuda:
            torch.cuda.synchronize()
        return out

    if cuda:
        run()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        before, high, stop = rss_bytes(), [0], threading.Event()

        def sample():
            while not stop.is_set():
                high[0] = max(high[0], rss_bytes())
                time.sleep(0.001)

        sampler = threading.Thread(target=sample)
        sampler.start()
        run()
        stop.set()
        sampler.join()
        peak = max(high[0], rss_bytes()) - before
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    config = model.config.text_config
    visual = sum(language.visual_counts)
    kept_tokens = language.mask.numel() - visual + sum(int(n * keep) for n in language.visual_counts)
    head_dim = config.hidden_size // config.num_attention_heads
    kv = kept_tokens * config.num_hidden_layers * 2 * config.num_key_value_heads * head_dim * model.dtype.itemsize
    queue.put(
        {
            "keep_ratio": keep,
            "prefill_ms": 1000 * statistics.median(times),
            "kv_cache_mib": kv / 2**20,
            "peak_mib": peak / 2**20,
            "visual_tokens": language.visual_counts[0],
        }
    )


def throughput(guide: str, decode: str, records: list[Record], batch_size: int, keep: float) -> tuple[float, list]:
    settings = PruningSettings(method="guided", keep_ratios=(keep,))
    runner = PrunedRunner(
        load_pair(decode, guide, settings), GenerationSettings(batch_size=batch_size, max_new_tokens=8), settings
    )
    runner.answer(records[:batch_size])  # warm-up
    start = time.perf_counter()
    rows = []
    for i in range(0, len(records), batch_size):
        rows += runner.answer(records[i : i + batch_size])
    return len(records) / (time.perf_counter() - start), [row["keep"] for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--decode-hidden", type=int, default=512)
    parser.add_argument("--decode-layers", type=int, default=8)
    parser.add_argument("--prefill-batch", type=int, default=8)
    parser.add_argument("--questions", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/guided_pruning.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        guide, decode = build_models(root, args.image_size, args.decode_hidden, args.decode_layers)
        (root / "images").mkdir()
        records = make_records(root / "images", args.questions, args.image_size)
        context = multiprocessing.get_context("spawn")
        prefill = []
        for keep in (1.0, 0.4, 0.09):
            queue = context.Queue()
            worker = context.Process(
                target=prefill_once,
                args=(str(decode), records[: args.prefill_batch], keep, args.threads, args.repeats, queue),
            )
            worker.start()
            prefill.append(queue.get())
            worker.join()
        batched, answers_batched = throughput(str(guide), str(decode), records, args.batch_size, 0.09)
        single, answers_single = throughput(str(guide), str(decode), records, 1, 0.09)
    if answers_batched != answers_single:
        raise SystemExit("batched and batch-size-1 answers differ")
    unpruned = prefill[0]
    for row in prefill:
        row["prefill_speedup"] = unpruned["prefill_ms"] / row["prefill_ms"]
    device = "cuda" if torch.cuda.is_available() else f"cpu ({args.threads} threads)"
    result = {
        "device": device,
        "machine": platform.machine(),
        "torch": torch.__version__,
        "decode": {
            "hidden": args.decode_hidden,
            "layers": args.decode_layers,
            "visual_tokens": unpruned["visual_tokens"],
        },
        "prefill_batch": args.prefill_batch,
        "prefill": prefill,
        "guided_keep_0.09": {
            "batch_size": args.batch_size,
            "batched_samples_per_s": batched,
            "batch1_samples_per_s": single,
            "ratio": batched / single,
            "answers_identical": True,
        },
    }
    write_json(args.out, result)
    memory = "peak allocated" if device == "cuda" else "peak RSS growth"
    print(
        f"decode prefill ({args.prefill_batch} prompts, {unpruned['visual_tokens']} visual tokens each, {device}, median of {args.repeats})"
    )
    print(f"| keep | prefill ms | speed-up | KV cache MiB | {memory} MiB |\n|---:|---:|---:|---:|---:|")
    for row in prefill:
        print(
            f"| {row['keep_ratio']:g} | {row['prefill_ms']:.1f} | {row['prefill_speedup']:.2f}x | {row['kv_cache_mib']:.2f} | {row['peak_mib']:.1f} |"
        )
    print(
        f"\nguided pipeline, keep 0.09, {args.questions} questions: batch {args.batch_size} {batched:.2f} q/s, "
        f"batch 1 {single:.2f} q/s, ratio {batched / single:.2f}x (answers identical)"
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
