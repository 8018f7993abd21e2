"""Training throughput: vlmflow's loop against TRL's SFTTrainer, side by side in one run.

Same checkpoint, same cached records, same batch size, same optimizer (AdamW, constant lr after
warmup does not matter for speed), answer-only loss in both (TRL: prompt-completion data with
`completion_only_loss`). Reports samples/s over the timed steps (after warm-up steps) and the ratio.

    python benchmarks/train_throughput.py --model resources/models/qwen2vl_guide \
        --cache results/cache/vqav2_train.jsonl --steps 30 --batch-size 16

Needs `pip install trl` (the `bench` extra).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from PIL import Image

from vlmflow.core.io import write_json
from vlmflow.core.prompts import build_messages
from vlmflow.core.records import read_records
from vlmflow.core.settings import GenerationSettings, TrainSettings
from vlmflow.finetune.examples import training_answer
from vlmflow.finetune.trainer import Trainer, load_for_training


def time_vlmflow(model_path: str, records, settings: TrainSettings, warmup: int) -> float:
    model, processor = load_for_training(model_path, settings, "auto")
    trainer = Trainer(model, processor, records, settings, GenerationSettings(), fingerprint={})
    for _ in range(warmup):
        trainer.train_step()
    start = time.perf_counter()
    for _ in range(settings.steps - warmup):
        trainer.train_step()
    return (settings.steps - warmup) * settings.batch_size / (time.perf_counter() - start)


def time_trl(model_path: str, records, settings: TrainSettings, warmup: int, workdir: Path) -> float:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    generation = GenerationSettings()
    rows = [
        {
            "prompt": build_messages(r.question, generation),
            "completion": [{"role": "assistant", "content": [{"type": "text", "text": training_answer(r)}]}],
            "images": [Image.open(r.image).convert("RGB")],
        }
        for r in records
    ]
    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    model, processor = load_for_training(model_path, settings, "auto")
    config = SFTConfig(
        output_dir=str(workdir),
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        max_steps=settings.steps,
        learning_rate=settings.lr,
        max_grad_norm=settings.max_grad_norm,
        lr_scheduler_type="cosine",
        warmup_steps=settings.warmup_steps,
        logging_steps=10_000,
        save_strategy="no",
        report_to=[],
        dataloader_num_workers=0,
        completion_only_loss=True,
        max_length=None,
        bf16=torch.cuda.is_available(),
        seed=settings.seed,
    )
    trainer = SFTTrainer(
        model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=processor, callbacks=[Stamp()]
    )
    trainer.train()
    timed = stamps[warmup:]
    return (len(timed) - 1) * settings.batch_size * settings.grad_accum / (timed[-1] - timed[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--cache", required=True, nargs="+")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--mode", choices=["full", "lora"], default="full")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/train_throughput.json")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    records = read_records(args.cache)[: args.steps * args.batch_size]
    settings = TrainSettings(steps=args.steps, batch_size=args.batch_size, lr=1e-3, warmup_steps=2, mode=args.mode)
    ours = time_vlmflow(args.model, records, settings, args.warmup)
    trl = time_trl(args.model, records, settings, args.warmup, Path(args.out).parent / "trl-output")
    result = {
        "model": args.model,
        "mode": args.mode,
        "batch_size": args.batch_size,
        "timed_steps": args.steps - args.warmup,
        "device": "cuda" if torch.cuda.is_available() else f"cpu ({args.threads} threads)",
        "machine": platform.machine(),
        "vlmflow_samples_per_s": round(ours, 2),
        "trl_sft_samples_per_s": round(trl, 2),
        "ratio_vlmflow_over_trl": round(ours / trl, 3),
    }
    write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
