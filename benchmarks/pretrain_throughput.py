"""Pretraining throughput: M-RoPE positions computed with the batch against inside the forward.

Same checkpoint, records, settings and loader workers, run after run for each batch size. "forward"
is the trainer with the model building its positions per sample in its forward and the batches in
pageable memory (as before `vlmflow.finetune.positions`); "batch" is the trainer as it is: the
loader workers compute the positions with the batch, and on a GPU the batches are pinned. Reports
the median samples/s over the steps after the warm-up, the ratio, and both runs' last losses.

    python benchmarks/pretrain_throughput.py --model resources/zoo/qwen2vl_guide/samples-0 \
        --cache results/cache/vqav2_train.jsonl results/cache/textvqa_train.jsonl \
        results/cache/swap_train.jsonl --batch-size 64 256 --loader-workers 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

import vlmflow.finetune.batches as batches_module
import vlmflow.finetune.trainer as trainer_module
from vlmflow.core.io import write_json
from vlmflow.core.records import read_records
from vlmflow.core.settings import GenerationSettings, TrainSettings

BATCH_POSITIONS, BATCH_SOURCE = trainer_module.batch_positions, batches_module.BatchSource.__init__
GENERATION = GenerationSettings(prompt="{question}\nAnswer the question using a single word or phrase.")


def positions_in(where: str) -> None:
    """forward: the model builds positions in its forward, batches stay pageable; batch: as shipped."""

    def pageable(self, batches, workers, pin_memory=False):
        BATCH_SOURCE(self, batches, workers, False)

    trainer_module.batch_positions = BATCH_POSITIONS if where == "batch" else (lambda model: None)
    batches_module.BatchSource.__init__ = BATCH_SOURCE if where == "batch" else pageable


def throughput(model_path: str, records, batch_size: int, workers: int, steps: int, warmup: int) -> tuple[float, float]:
    """Median samples/s after `warmup` steps, and the last loss."""
    settings = TrainSettings(steps=10 * steps, batch_size=batch_size, lr=1e-3, warmup_steps=200, mode="full")
    model, processor = trainer_module.load_for_training(model_path, settings, "auto")
    trainer = trainer_module.Trainer(model, processor, records, settings, GENERATION, {}, workers)
    with tempfile.TemporaryDirectory() as tmp:
        rows = trainer.run(steps, Path(tmp) / "log.jsonl")
    return statistics.median(r["samples_per_s"] for r in rows[warmup:]), rows[-1]["loss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, nargs="+")
    parser.add_argument("--cache", required=True, nargs="+")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[16])
    parser.add_argument("--loader-workers", type=int, default=0)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/pretrain_throughput.json")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)  # as rule train_model runs
    records = read_records(args.cache)
    cuda = torch.cuda.is_available()
    runs = []
    for model in args.model:
        for batch_size in args.batch_size:
            measured = {}
            for where in ("forward", "batch"):
                positions_in(where)
                measured[where] = throughput(model, records, batch_size, args.loader_workers, args.steps, args.warmup)
            runs.append(
                {
                    "model": model,
                    "batch_size": batch_size,
                    "forward_samples_per_s": round(measured["forward"][0], 1),
                    "batch_samples_per_s": round(measured["batch"][0], 1),
                    "ratio": round(measured["batch"][0] / measured["forward"][0], 2),
                    "last_loss_forward": measured["forward"][1],
                    "last_loss_batch": measured["batch"][1],
                }
            )
            print(json.dumps(runs[-1]), flush=True)
    result = {
        "device": f"cuda ({torch.cuda.get_device_name()})" if cuda else f"cpu ({args.threads} threads)",
        "loader_workers": args.loader_workers,
        "steps": args.steps,
        "warmup": args.warmup,
        "runs": runs,
    }
    write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
