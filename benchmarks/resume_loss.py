"""Resume: the work an inference job loses when it is killed at a random point and restarted.

Each trial starts a fresh worker process (as Snakemake would start a job) on a new output, waits
until it has answered a random number of batches plus a random fraction of one more, SIGKILLs it
and restarts it on the same output. The worker logs the cumulative number of samples it has
generated after every batch (fsynced), so the samples lost are those generated before the kill
minus those the restarted job resumed: computed twice. Target: at most one durable chunk
(`chunk_batches * batch_size` samples) lost per kill. Every resumed output is checked against an
uninterrupted reference run (same rows, same order), which also gives the time per batch.

    python benchmarks/resume_loss.py --model resources/zoo/qwen2vl_guide/samples-96000 \
        --cache results/cache/vqav2_val.jsonl --threads 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "resources/zoo/qwen2vl_guide/samples-96000"
TARGET = "at most one chunk per kill"


def worker(args: argparse.Namespace) -> None:
    """One inference job, as the workflow runs it, logging its progress after every batch."""
    import torch

    import vlmflow.vqa.inference
    from vlmflow.core.models import load_vlm
    from vlmflow.core.records import read_records
    from vlmflow.core.settings import GenerationSettings
    from vlmflow.vqa.inference import fingerprint, run_inference

    torch.set_num_threads(args.threads)
    settings = GenerationSettings(
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        chunk_batches=args.chunk_batches,
    )
    model, processor = load_vlm(args.model)
    records = read_records(args.cache)[: args.questions]
    answer = vlmflow.vqa.inference.answer_batch
    generated = 0

    def logged(*call: Any) -> list[dict[str, Any]]:  # run_inference looks it up at each batch
        nonlocal generated
        rows = answer(*call)
        generated += len(rows)
        # Durable before the next step, so the parent reads every batch answered before its kill.
        with open(args.progress, "a") as handle:
            handle.write(f"{generated} {time.time():.6f}\n")
            handle.flush()
            os.fsync(handle.fileno())
        return rows

    vlmflow.vqa.inference.answer_batch = logged
    key = fingerprint(args.model, args.cache, settings)
    done = run_inference(model, processor, records, args.output, settings, key)
    print(json.dumps({"done": done, "device": str(model.device)}), flush=True)


def progress(path: Path) -> list[tuple[int, float]]:
    """(samples generated so far, time) after each answered batch; a torn last line is ignored."""
    if not path.is_file():
        return []
    lines = path.read_text().split("\n")[:-1]  # the last element is "" or a torn line
    return [(int(count), float(stamp)) for count, stamp in (line.split() for line in lines)]


class Runner:
    """Starts worker processes with the benchmark's job settings; their stderr goes to one log."""

    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args = args
        self.log = root / "worker.log"

    def start(self, output: Path, progress_path: Path, stdout: int) -> subprocess.Popen:
        a = self.args
        command = [
            sys.executable, __file__, "--worker", "--model", a.model, "--cache", a.cache,
            "--questions", str(a.questions), "--batch-size", str(a.batch_size),
            "--chunk-batches", str(a.chunk_batches), "--max-new-tokens", str(a.max_new_tokens),
            "--threads", str(a.threads), "--output", str(output), "--progress", str(progress_path),
        ]  # fmt: skip
        with open(self.log, "a") as log:
            return subprocess.Popen(command, stdout=stdout, stderr=log, text=True)

    def complete(self, output: Path, progress_path: Path) -> dict[str, Any]:
        """Run a worker to the end; returns its report (`done`: rows it resumed, `device`)."""
        proc = self.start(output, progress_path, subprocess.PIPE)
        stdout, _ = proc.communicate()
        if proc.returncode != 0:
            tail = "".join(self.log.read_text().splitlines(keepends=True)[-20:])
            raise RuntimeError(f"worker exited with {proc.returncode}; end of its log:\n{tail}")
        return json.loads(stdout.strip().splitlines()[-1])


def kill_after(runner: Runner, output: Path, progress_path: Path, batches: int, delay: float) -> int | None:
    """Start a worker, SIGKILL it `delay` seconds after its `batches`-th answered batch; returns the
    samples it had generated, or None when it had finished its output before the kill."""
    proc = runner.start(output, progress_path, subprocess.DEVNULL)
    while True:
        exited = proc.poll() is not None  # before reading: batches logged before exit all count
        if len(progress(progress_path)) >= batches:
            break
        if exited:
            raise RuntimeError(f"worker exited with {proc.returncode} before batch {batches}")
        time.sleep(0.002)
    time.sleep(delay)
    proc.kill()  # SIGKILL: no handler, no cleanup, as when a node or the scheduler kills a job
    proc.wait()
    if output.exists():  # it had published the whole output: the kill missed the work
        return None
    return progress(progress_path)[-1][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_model = DEFAULT_MODEL
    parser.add_argument("--model", default=default_model)
    parser.add_argument("--cache", default="results/cache/vqav2_val.jsonl")
    parser.add_argument("--questions", type=int, default=128, help="the first N cached records")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--chunk-batches", type=int, default=2, help="batches per flush (config vqa.defaults)")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/resume_loss.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--progress", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    from vlmflow.core.io import read_jsonl, write_json

    rng = random.Random(args.seed)
    chunk_size = args.chunk_batches * args.batch_size
    with tempfile.TemporaryDirectory(prefix="resume_loss-") as tmp:
        root = Path(tmp)
        runner = Runner(args, root)
        reference_out = root / "reference" / "predictions.jsonl"
        report = runner.complete(reference_out, root / "reference.progress")
        reference = read_jsonl(reference_out)
        stamps = [stamp for _, stamp in progress(root / "reference.progress")]
        total_batches = len(stamps)
        if total_batches < 2:
            raise SystemExit(f"{len(reference)} questions make one batch: nothing to kill between")
        batch_seconds = statistics.median(b - a for a, b in itertools.pairwise(stamps))
        trials: list[dict[str, Any]] = []
        attempts = itertools.count()
        while len(trials) < args.kills:
            batches, fraction = rng.randint(1, total_batches - 1), rng.random()
            run_dir = root / f"attempt-{next(attempts)}"
            run_dir.mkdir()
            output = run_dir / "predictions.jsonl"
            delay = fraction * batch_seconds
            generated = kill_after(runner, output, run_dir / "killed.progress", batches, delay)
            if generated is None:  # it answered its last batch within the delay
                print(f"worker finished before the kill after {batches} batches + {fraction:.2f}; drawing again")
                continue
            resumed = runner.complete(output, run_dir / "resumed.progress")["done"]
            lost = generated - resumed
            trials.append({
                "kill_after_batches": batches,
                "kill_fraction_of_next_batch": fraction,
                "generated": generated,
                "resumed": resumed,
                "lost": lost,
                "lost_chunks": lost / chunk_size,
                "identical": read_jsonl(output) == reference,
            })  # fmt: skip
    losses = [t["lost"] for t in trials]
    device = report["device"]
    result = {
        "model": args.model,
        "device": device if device.startswith("cuda") else f"cpu ({args.threads} threads)",
        "questions": len(reference),
        "batch_size": args.batch_size,
        "chunk_batches": args.chunk_batches,
        "chunk_size": chunk_size,
        "max_new_tokens": args.max_new_tokens,
        "seconds_per_batch": batch_seconds,
        "seed": args.seed,
        "trials": trials,
        "median_lost": statistics.median(losses),
        "max_lost": max(losses),
        "median_lost_chunks": statistics.median(losses) / chunk_size,
        "target": TARGET,
        "met": max(losses) <= chunk_size,
        "all_identical": all(t["identical"] for t in trials),
    }
    write_json(args.out, result)
    for t in trials:
        kill = f"{t['kill_after_batches']} batches + {t['kill_fraction_of_next_batch']:.2f}"
        print(
            f"kill after {kill}: generated {t['generated']}, resumed {t['resumed']}, "
            f"lost {t['lost']} ({t['lost_chunks']:.2f} chunks), identical {t['identical']}"
        )
    print(
        f"{len(trials)} kills, {len(reference)} questions, chunk {chunk_size} samples: "
        f"lost median {result['median_lost']} / max {result['max_lost']} samples "
        f"({result['median_lost_chunks']:.2f} chunks median); {TARGET}: "
        f"{'met' if result['met'] else 'NOT met'}; identical outputs: {result['all_identical']}"
    )


if __name__ == "__main__":
    main()
