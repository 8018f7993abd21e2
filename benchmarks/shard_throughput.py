"""Sharded inference: one process against N concurrent shard processes on the same questions, side
by side in one run.

Both sides run what the workflow runs, each job a fresh process (imports and model load included,
as Snakemake starts them): one process answers every question (rule `infer_vqa`), or N processes
start together, each answering its `shard_of` part with `run_inference` (rule `infer_vqa_shard`),
and `gather_jsonl` writes the predictions once the last one ends (rule `gather_vqa_shards`). Timed
from launch to the published predictions file; questions/s and the speed-up are medians over
interleaved repeats, and every gathered file must be byte for byte the one-process file. The time
inside `run_inference` (the slowest shard's) is reported beside it, so the start-up every job pays
is visible. On CPU every process gets `--threads` threads (default 1: N shards use N cores, the one
process one); on CUDA each shard gets its own GPU (CUDA_VISIBLE_DEVICES) when N are visible, and
they share the first visible one otherwise (the output says which).

    python benchmarks/shard_throughput.py --model resources/zoo/qwen2vl_guide/samples-96000 \
        --cache results/cache/vqav2_val.jsonl --device cpu
    python benchmarks/gpu_setup.py --out /tmp/gpu      # a GPU-sized checkpoint and 1000 questions
    python benchmarks/shard_throughput.py --device cuda --model /tmp/gpu/qwen2vl_2b \
        --cache /tmp/gpu/vqav2_val.jsonl --questions 1000 --batch-size 32 --max-new-tokens 16 \
        --out benchmarks/results/shard_throughput_cuda.json   # RESULTS.md shows it beside the CPU run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TRAINED = Path("resources/zoo/qwen2vl_guide/samples-96000")


def worker(args: argparse.Namespace) -> None:
    """One inference job as workflow/scripts/vqa/infer.py runs it (one shard, or all questions);
    prints the seconds it spent loading the model and inside `run_inference`."""
    import torch

    from vlmflow.core.models import load_vlm
    from vlmflow.core.records import read_records
    from vlmflow.core.settings import GenerationSettings
    from vlmflow.core.shards import shard_of
    from vlmflow.vqa.inference import fingerprint, run_inference

    torch.set_num_threads(args.threads)
    settings = GenerationSettings(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
    records = read_records(args.cache)[: args.questions]
    if args.shard is not None:
        records = shard_of(records, args.shard, settings.batch_size)
    start = time.perf_counter()
    model, processor = load_vlm(args.model, device=args.device)
    loaded = time.perf_counter()
    key = {**fingerprint(args.model, args.cache, settings), "shard": args.shard}
    run_inference(model, processor, records, args.output, settings, key)
    seconds = time.perf_counter() - loaded
    cuda = model.device.type == "cuda"
    device = (
        f"cuda ({torch.cuda.get_device_name(model.device)})"
        if cuda
        else f"cpu ({args.threads} thread{'s' * (args.threads > 1)} per process)"
    )
    print(json.dumps({"load_s": loaded - start, "infer_s": seconds, "device": device}))


def placements(device: str, shards: int) -> tuple[list[str | None], str]:
    """CUDA_VISIBLE_DEVICES for each shard (None: leave as is) and a sentence saying where they run."""
    import torch

    if device == "cpu":
        return [None] * shards, f"{shards} processes on the CPU"
    gpus = torch.cuda.device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", ",".join(map(str, range(gpus)))).split(",")[:gpus]
    if gpus >= shards:
        return visible[:shards], f"one GPU per shard ({shards} of {gpus} visible)"
    return visible[:1] * shards, f"all {shards} shards share one GPU (only {gpus} visible)"


def launch(args: argparse.Namespace, out: Path, shard: str | None, gpu: str | None, log: Path) -> subprocess.Popen:
    command = [
        sys.executable, __file__, "--worker", "--model", args.model, "--cache", args.cache,
        "--questions", str(args.questions), "--batch-size", str(args.batch_size),
        "--max-new-tokens", str(args.max_new_tokens), "--threads", str(args.threads),
        "--device", args.device, "--output", str(out), *(["--shard", shard] if shard else []),
    ]  # fmt: skip
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else None
    with open(log, "a") as handle:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=handle, text=True, env=env)


def finish(procs: list[subprocess.Popen], log: Path) -> list[dict[str, Any]]:
    """Wait for every process; their reports, or an error with the end of their log."""
    outputs = [proc.communicate()[0] for proc in procs]
    if any(proc.returncode for proc in procs):
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise RuntimeError(f"a worker failed (exits {[p.returncode for p in procs]}); end of the log:\n{tail}")
    return [json.loads(text.strip().splitlines()[-1]) for text in outputs]


def one_process(args: argparse.Namespace, root: Path, gpu: str | None, log: Path) -> dict[str, Any]:
    """All questions in one job: seconds from launch to its predictions file."""
    output = root / "predictions.jsonl"
    start = time.perf_counter()
    (report,) = finish([launch(args, output, None, gpu, log)], log)
    return {"wall_s": time.perf_counter() - start, "infer_s": report["infer_s"], "load_s": report["load_s"],
            "output": output, "device": report["device"]}  # fmt: skip


def sharded(args: argparse.Namespace, root: Path, gpus: list[str | None], ids: list[str], log: Path) -> dict[str, Any]:
    """N shard jobs started together, then the gather: seconds from launch to the gathered file."""
    from vlmflow.core.shards import gather_jsonl, shard_labels

    labels = shard_labels(args.shards)
    parts = [root / "shards" / f"{label}.jsonl" for label in labels]
    start = time.perf_counter()
    procs = [launch(args, part, label, gpu, log) for part, label, gpu in zip(parts, labels, gpus)]
    reports = finish(procs, log)
    output = root / "predictions.jsonl"
    gather_jsonl(parts, output, ids)
    return {"wall_s": time.perf_counter() - start, "infer_s": max(r["infer_s"] for r in reports),
            "load_s": max(r["load_s"] for r in reports), "output": output}  # fmt: skip


def summary(runs: list[dict[str, Any]], questions: int) -> dict[str, Any]:
    wall, infer = statistics.median(r["wall_s"] for r in runs), statistics.median(r["infer_s"] for r in runs)
    return {
        "questions_per_s": questions / wall,
        "wall_s": wall,
        "inference_questions_per_s": questions / infer,
        "inference_s": infer,
        "load_s": statistics.median(r["load_s"] for r in runs),
        "runs_wall_s": [r["wall_s"] for r in runs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(TRAINED))
    parser.add_argument("--cache", default="results/cache/vqav2_val.jsonl")
    parser.add_argument("--questions", type=int, default=240, help="the first N records of the cache")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda when visible")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each process")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/shard_throughput.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shard", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    import torch

    from vlmflow.core.io import write_json
    from vlmflow.core.records import read_records

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"

    ids = [r.question_id for r in read_records(args.cache)[: args.questions]]
    args.questions = len(ids)
    gpus, placement = placements(args.device, args.shards)
    single_runs: list[dict[str, Any]] = []
    shard_runs: list[dict[str, Any]] = []
    identical: list[bool] = []
    with tempfile.TemporaryDirectory(prefix="shard_throughput-") as tmp:
        root, log = Path(tmp), Path(tmp) / "workers.log"
        one_process(args, root / "warm-up", gpus[0], log)  # file cache, compiled bytecode, kernels
        for repeat in range(args.repeats):  # interleaved, so drift in machine load hits both alike
            single_runs.append(one_process(args, root / f"single-{repeat}", gpus[0], log))
            shard_runs.append(sharded(args, root / f"sharded-{repeat}", gpus, ids, log))
            identical.append(shard_runs[-1]["output"].read_bytes() == single_runs[-1]["output"].read_bytes())
            print(f"repeat {repeat + 1}: 1 process {single_runs[-1]['wall_s']:.2f} s, {args.shards} shards "
                  f"{shard_runs[-1]['wall_s']:.2f} s, gathered file identical: {identical[-1]}", flush=True)  # fmt: skip
    device = single_runs[0]["device"]
    one, many = summary(single_runs, len(ids)), summary(shard_runs, len(ids))
    result = {
        "model": args.model,
        "cache": args.cache,
        "device": device,
        "placement": placement,
        "cpu_count": os.cpu_count(),
        "questions": len(ids),
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "shards": args.shards,
        "repeats": args.repeats,
        "one_process": one,
        "sharded": many,
        "speedup": many["questions_per_s"] / one["questions_per_s"],
        "inference_speedup": many["inference_questions_per_s"] / one["inference_questions_per_s"],
        "identical": all(identical),
    }
    write_json(args.out, result)
    print(f"\n{len(ids)} questions, batch {args.batch_size}, {args.max_new_tokens} new tokens, {device}; {placement}; "
          f"median of {args.repeats}")  # fmt: skip
    print("| run | q/s (launch to file) | wall s | q/s in run_inference | load s |\n|---|---:|---:|---:|---:|")
    for name, r in (("1 process", one), (f"{args.shards} shards + gather", many)):
        print(f"| {name} | {r['questions_per_s']:.1f} | {r['wall_s']:.2f} | {r['inference_questions_per_s']:.1f} | "
              f"{r['load_s']:.2f} |")  # fmt: skip
    print(f"speed-up {result['speedup']:.2f}x (inside run_inference {result['inference_speedup']:.2f}x); "
          f"gathered predictions byte-identical to the 1-process file: {result['identical']}")  # fmt: skip
    if not result["identical"]:
        raise SystemExit("the gathered predictions differ from the one-process predictions")


if __name__ == "__main__":
    main()
