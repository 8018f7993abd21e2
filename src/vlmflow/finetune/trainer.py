"""Supervised fine-tuning of a VLM: LoRA (peft) or full, resumable to the exact same curve.

One loop, written out: seeded data order, gradient accumulation, AdamW with linear warmup and
cosine decay, gradient clipping, bf16 autocast on GPU, a JSONL log per optimizer step and a
checkpoint every N steps holding the trainable weights, the optimizer, the scheduler, the RNG states
and the step (from which the data position follows). A killed job started again continues from its
last checkpoint; a later stage (a larger step count) continues from an earlier stage's state.
With `gpus` > 1 a stage runs data-parallel (`vlmflow.core.distributed`): rank r computes micro-batches
r, r + gpus, ... of each step, the gradients are summed over the ranks, so the curve is the one
process's.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from tqdm.auto import tqdm
from transformers import PreTrainedModel, ProcessorMixin, get_cosine_schedule_with_warmup

from vlmflow.architectures.base import Architecture
from vlmflow.architectures.registry import architecture
from vlmflow.core import distributed
from vlmflow.core.checkpoint import checkpoint_candidates, read_state_step, restore_latest, save_state, truncate_log
from vlmflow.core.gpu_memory import free_memory, inject_oom, out_of_memory
from vlmflow.core.io import atomic_directory, folder_signature, write_json
from vlmflow.core.models import load_vlm
from vlmflow.core.records import Record
from vlmflow.core.settings import GenerationSettings, TrainSettings, halved_micro_batch
from vlmflow.finetune.batches import BatchSource, MicroBatches
from vlmflow.finetune.positions import batch_positions
from vlmflow.finetune.tracking import OfflineWandbRun

logger = logging.getLogger("vlmflow")

PROJECTOR_NAMES = ("merger", "deepstack_merger_list", "multi_modal_projector", "mm_projector", "connector")
VISION_NAMES = ("visual", "vision_tower", "vision_model")
LANGUAGE_PROJECTIONS = r"(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
VISION_LORA_TARGETS = (
    r".*(visual\.blocks|vision_tower|vision_model).*\.(qkv|proj|q_proj|k_proj|v_proj|out_proj|fc1|fc2)$"
)


def component(name: str) -> str:
    """Which part of a VLM a parameter belongs to: projector, vision or language."""
    parts = name.split(".")
    if any(p in PROJECTOR_NAMES for p in parts):
        return "projector"
    if any(p in VISION_NAMES for p in parts):
        return "vision"
    return "language"


def language_lora_targets(arch: Architecture) -> str:
    """LoRA's target pattern: the attention and MLP projections inside the family's language model."""
    return rf".*\.{arch.language_module_name()}\..*\.{LANGUAGE_PROJECTIONS}$"


def prepare_model(model: PreTrainedModel, settings: TrainSettings) -> PreTrainedModel:
    """Wrap with LoRA (language model by default) or unfreeze everything (but a frozen vision
    tower) for a full fine-tune."""
    arch = architecture(model)
    arch.require("full_finetune" if settings.mode == "full" else "lora")
    if settings.mode == "full":
        model.requires_grad_(True)
        if settings.freeze_vision:
            for name, param in model.named_parameters():
                param.requires_grad_(component(name) != "vision")
        return model
    if settings.mode != "lora":
        raise ValueError(f"unknown training mode '{settings.mode}'; choose lora or full")
    targets = language_lora_targets(arch)
    if settings.train_vision:
        targets = f"({targets})|({VISION_LORA_TARGETS})"
    projector = sorted({n.split(".")[-1] for n, _ in model.named_modules() if n.split(".")[-1] in PROJECTOR_NAMES})
    config = LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=targets,
        modules_to_save=projector if settings.train_projector else None,
    )
    return get_peft_model(model, config)


def param_groups(model: PreTrainedModel, settings: TrainSettings) -> list[dict[str, Any]]:
    """One AdamW group per VLM component that has trainable parameters, each with its own lr."""
    lrs = {
        "language": settings.lr,
        "projector": settings.lr_projector or settings.lr,
        "vision": settings.lr_vision or settings.lr,
    }
    groups: dict[str, list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault(component(name), []).append(param)
    return [
        {"name": key, "params": params, "lr": lrs[key], "weight_decay": settings.weight_decay}
        for key, params in sorted(groups.items())
    ]


class Trainer:
    """Holds model, optimizer and schedule for one training run over `records`."""

    def __init__(
        self,
        model: PreTrainedModel,
        processor: ProcessorMixin,
        records: Sequence[Record],
        settings: TrainSettings,
        generation: GenerationSettings,
        fingerprint: dict[str, Any],
        loader_workers: int = 0,
    ) -> None:
        if not records:
            raise ValueError("no training records")
        self.processor, self.records, self.settings, self.generation = processor, records, settings, generation
        self.arch = architecture(model)
        self.fingerprint, self.loader_workers = fingerprint, loader_workers
        self.device = next(model.parameters()).device
        self.positions = batch_positions(model)
        self.source, self.until = self.batch_source(), 0
        random.seed(settings.seed)
        np.random.seed(settings.seed)
        torch.manual_seed(settings.seed)
        self.model = prepare_model(model, settings)
        distributed.seed_rank(settings.seed)
        self.model.train()
        self.optimizer = torch.optim.AdamW(param_groups(self.model, settings), lr=settings.lr)
        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer, settings.warmup_steps, settings.steps)
        self.step = 0

    def resume(self, candidates: Sequence[Path], until: int) -> int:
        """Continue from the most advanced saved state of this run that does not pass `until`."""
        self.step = restore_latest(candidates, self.fingerprint, self.model, self.optimizer, self.scheduler, until)
        return self.step

    def batch_source(self) -> BatchSource:
        batches = MicroBatches(
            self.arch,
            self.processor,
            self.records,
            self.generation,
            self.settings.batch_size,
            self.settings.seed,
            self.positions,
        )
        return BatchSource(batches, self.loader_workers, pin_memory=self.device.type == "cuda")

    def expect_steps(self, until: int) -> None:
        """Collate ahead this rank's micro-batches of the steps from here to `until`."""
        accum, rank, world = self.settings.grad_accum, distributed.rank(), distributed.world_size()
        self.source.expect([s * accum + a for s in range(self.step, until) for a in range(rank, accum, world)])

    def micro_batch(self, index: int) -> dict[str, torch.Tensor]:
        batch = {k: v.to(self.device, non_blocking=True) for k, v in self.source.get(index).items()}
        if "pixel_values" in batch and self.model.dtype != torch.float32:
            batch["pixel_values"] = batch["pixel_values"].to(self.model.dtype)
        return batch

    def accumulate(self) -> float:
        """Forward and backward over this rank's share of the step's `grad_accum` micro-batches
        (every world-size-th from its rank, each loss over the global accumulation); its part of
        the step's loss."""
        accum = self.settings.grad_accum
        total = 0.0
        for a in range(distributed.rank(), accum, distributed.world_size()):
            inject_oom(self.settings.batch_size)
            batch = self.micro_batch(self.step * accum + a)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                loss = self.model(**batch).loss / accum
            loss.backward()
            total += loss.item()
        return total

    def train_step(self) -> dict[str, float]:
        """One optimizer step over `grad_accum` micro-batches; returns its log row. Out of device
        memory, the step starts again with half the micro-batch and twice the accumulation: the same
        samples, the same effective batch, the same resume fingerprint. Data-parallel, the ranks
        halve together when any of them ran out; the gradients and the loss are summed over them."""
        start = time.perf_counter()
        while True:
            try:
                total = self.accumulate()
                failed = False
            except Exception as error:
                if not out_of_memory(error) or self.settings.batch_size == 1:
                    raise
                failed = True
            if not distributed.any_rank(failed):
                break
            self.optimizer.zero_grad(set_to_none=True)
            free_memory()
            self.settings = halved_micro_batch(self.settings)
            self.source.close()
            self.source = self.batch_source()
            self.expect_steps(self.until)
            logger.warning(
                "step %d: out of memory; micro-batch %d x %d accumulation from now on",
                self.step + 1,
                self.settings.batch_size,
                self.settings.grad_accum,
            )
        trainable = [p for g in self.optimizer.param_groups for p in g["params"]]
        distributed.sum_gradients(trainable)
        (total,) = distributed.sum_over_ranks([total])
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, self.settings.max_grad_norm)
        lrs = {f"lr/{g['name']}": g["lr"] for g in self.optimizer.param_groups}
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        seconds = time.perf_counter() - start
        return {
            "step": self.step,
            "loss": total,
            "grad_norm": float(grad_norm),
            **lrs,
            "samples_per_s": self.settings.effective_batch_size / seconds,
        }

    def run(
        self,
        until: int,
        log_path: Path,
        checkpoint_dir: Path | None = None,
        on_step: Callable[[dict[str, float]], None] | None = None,
    ) -> list[dict[str, float]]:
        """Train from the current step to `until`, appending to the log and checkpointing (rank 0
        writes; every rank returns the rows)."""
        main = distributed.is_main()
        if main:
            truncate_log(log_path, self.step)
        rows = []
        self.until = until
        self.expect_steps(until)
        with (
            open(log_path if main else os.devnull, "a", encoding="utf-8") as log,
            tqdm(total=until, initial=self.step, desc="train", unit="step", disable=not main) as bar,
        ):
            while self.step < until:
                row = self.train_step()
                rows.append(row)
                log.write(json.dumps(row) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{row['loss']:.3f}")
                bar.update(1)
                if on_step:
                    on_step(row)
                if checkpoint_dir and (self.step % self.settings.checkpoint_every == 0 or self.step == until):
                    save_state(checkpoint_dir, self.model, self.optimizer, self.scheduler, self.step, self.fingerprint)
                distributed.inject_kill(self.step)
        self.source.close()
        return rows

    def export(self, directory: Path, base_path: str | Path, extra: dict[str, Path] | None = None) -> None:
        """Write an Auto-loadable checkpoint (LoRA merged in), for LoRA the adapter alone in
        `adapter/`, and copies of the `extra` files or folders, atomically."""
        with atomic_directory(directory) as tmp:
            for name, source in (extra or {}).items():
                (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp / name)
            model = self.model
            if isinstance(model, PeftModel):
                model.save_pretrained(tmp / "adapter")
                model = model.merge_and_unload()
            model.save_pretrained(tmp)
            self.processor.save_pretrained(tmp)
            write_json(
                tmp / "vlmflow_train.json", {"base_model": str(base_path), "step": self.step, **asdict(self.settings)}
            )


def train_fingerprint(
    base_path: str | Path, data_digest: str, settings: TrainSettings, generation: GenerationSettings
) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one for its state to be reusable.

    The base model's files count, not its path (a model rebuilt at the same path starts over). The
    effective batch counts, not its split into micro-batches: a job that ran out of memory (half the
    micro-batch, twice the accumulation) sees the same samples per step."""
    train = {k: v for k, v in asdict(settings).items() if k not in ("batch_size", "grad_accum")}
    train["effective_batch_size"] = settings.effective_batch_size
    return {"base": folder_signature(base_path), "data": data_digest, "train": train, "prompt": asdict(generation)}


def load_for_training(
    base_path: str | Path, settings: TrainSettings, device: str
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """LoRA trains on a bf16 base on GPU; a full fine-tune keeps fp32 master weights (bf16 autocast)."""
    model, processor = load_vlm(base_path, device=device)
    if settings.mode == "full":
        model.float()
    return model, processor


def train_stage(
    base_path: str | Path,
    records: Sequence[Record],
    data_digest: str,
    settings: TrainSettings,
    generation: GenerationSettings,
    *,
    until: int,
    out_dir: Path,
    run_dir: Path,
    previous: Path | None = None,
    device: str = "auto",
    wandb_name: str | None = None,
    gpus: int = 1,
    loader_workers: int = 0,
) -> list[dict[str, float]]:
    """Train to step `until` and export `out_dir` (checkpoint, adapter, trainer state, log).

    Starts from the run's own last checkpoint when a killed job left one, else from the previous
    stage's state (an earlier scale), else from the base model. With `wandb_name`, the step log is
    also written to an offline wandb run of that name under `run_dir/wandb/`. With `gpus` > 1 it
    runs in that many data-parallel processes (the same curve; rank 0 writes every file). With
    `loader_workers` > 0 that many processes collate the micro-batches ahead (the same batches).
    """
    distributed.check_split("grad_accum", settings.grad_accum, gpus)
    if gpus > 1:
        return distributed.launch(
            train_stage, gpus, device, base_path, records, data_digest, settings, generation, until=until,
            out_dir=out_dir, run_dir=run_dir, previous=previous, wandb_name=wandb_name,
            loader_workers=loader_workers,
        )  # fmt: skip
    model, processor = load_for_training(base_path, settings, device)
    fingerprint = train_fingerprint(base_path, data_digest, settings, generation)
    trainer = Trainer(model, processor, records, settings, generation, fingerprint, loader_workers)
    checkpoint = run_dir / "checkpoint"
    log_path = run_dir / "log.jsonl"
    run_dir.mkdir(parents=True, exist_ok=True)
    candidates = checkpoint_candidates(checkpoint)
    candidates += [previous / "trainer_state"] if previous else []
    started = trainer.resume(candidates, until)
    if previous and started == 0 and read_state_step(previous / "trainer_state", fingerprint) is None:
        raise ValueError(f"{previous}: its trainer state belongs to another run (settings or data changed)")
    main = distributed.is_main()
    if main and previous and not (log_path.is_file() and log_path.stat().st_size) and started:
        shutil.copy(previous / "train_log.jsonl", log_path)
    tracker = OfflineWandbRun(run_dir, wandb_name, fingerprint) if wandb_name and main else None
    try:
        rows = trainer.run(until, log_path, checkpoint, on_step=tracker.log if tracker else None)
    finally:
        if tracker:
            tracker.finish()
    if main:
        truncate_log(log_path, until)
        trainer.export(out_dir, base_path, extra={"trainer_state": checkpoint, "train_log.jsonl": log_path})
    distributed.barrier()
    return rows
