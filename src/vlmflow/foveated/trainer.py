"""Training one run of the foveated-VLM sweeps (seed 001), resumable to the same curve.

What the seed varies between runs is all here: which parameter groups are frozen (connector
only, connector and vision, everything), each group's learning rate, the loss routing (all-token
or answer-only), the coarse auxiliary weight, the passes trained (coarse+fine or coarse only),
the data mix and image replication. Every run sees the same seeded sample budget for its mix.

Per step the log holds loss, loss_fine, loss_coarse, their ratio, the gradient norm, the query
attention's entropy and each group's learning rate; every `eval_every` steps the fixed val set is
scored and the attention maps of a few fixed samples are saved. The checkpoint, optimizer,
scheduler, RNG and step are saved every `checkpoint_every` steps; a killed job resumes from there.

With `gpus` > 1 a run is data-parallel (`vlmflow.core.distributed`): rank r takes samples r,
r + gpus, ... of each step's batch, weighs its loss by its share of the step's supervised tokens
and the gradients are summed over the ranks, so the loss is the one process's token mean; rank 0
alone evaluates and writes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from vlmflow.core import distributed
from vlmflow.core.checkpoint import checkpoint_candidates, restore_latest, save_state, truncate_log
from vlmflow.core.io import atomic_directory, atomic_write, write_json
from vlmflow.core.models import pick_device
from vlmflow.core.settings import FoveatedSettings
from vlmflow.foveated.data import FrameSample, FrameStore, fixed_subset, sample_budget
from vlmflow.foveated.evaluate import (
    FrameBatches,
    attention_samples,
    evaluate,
    save_attention,
    save_frames,
)
from vlmflow.foveated.model import GROUPS, MODES, FrameLM, from_parts, training_mode, visual_tokens_per_frame
from vlmflow.foveated.query import attention_entropy

EVAL_BATCH = 32
logger = logging.getLogger("vlmflow")


def check_settings(settings: FoveatedSettings) -> None:
    unknown = set(settings.freeze) - {"vision", "language"}
    if unknown:
        raise ValueError(f"freeze: unknown or unfreezable groups {sorted(unknown)}; choose from vision, language")
    if settings.mode not in MODES["foveated"][:2]:
        raise ValueError(f"mode '{settings.mode}' cannot be trained; choose coarse_fine or coarse_only")


def freeze(model: FrameLM, groups: tuple[str, ...]) -> None:
    """Frozen groups get no gradient, so neither the optimizer nor weight decay touches them."""
    for name, param in model.named_parameters():
        param.requires_grad_(model.group_of(name) not in groups)


def optimizer_groups(model: FrameLM, settings: FoveatedSettings) -> list[dict[str, Any]]:
    """One AdamW group per trainable parameter group, each with its own learning rate."""
    params: dict[str, list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            params.setdefault(model.group_of(name), []).append(param)
    return [
        {
            "name": g,
            "params": params[g],
            "lr": settings.lrs[g],
            "weight_decay": settings.weight_decay,
        }
        for g in GROUPS
        if g in params
    ]


def finite_or_null(row: dict[str, Any]) -> dict[str, Any]:
    """A diverged run's NaN / inf values logged as null (strict JSON; the run never wins a sweep)."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


class FoveatedTrainer:
    """Model, optimizer, schedule and data of one run."""

    def __init__(
        self,
        model: FrameLM,
        tokenizer: Any,
        image_processor: Any,
        train: list[FrameSample],
        val: list[FrameSample],
        settings: FoveatedSettings,
        fingerprint: dict[str, Any],
        device: torch.device,
    ) -> None:
        check_settings(settings)
        self.settings, self.fingerprint, self.device = settings, fingerprint, device
        self.tokenizer, self.image_processor = tokenizer, image_processor
        torch.manual_seed(settings.seed)
        self.model = model.to(device).float()
        freeze(self.model, settings.freeze)
        self.model.train()
        self.order = sample_budget(train, dict(settings.mix), settings.budget, settings.seed)
        store = FrameStore(image_processor, settings.replicate_image_frames)
        self.train_batches = FrameBatches(train, tokenizer, store, settings.max_length, device)
        self.val_batches = FrameBatches(val, tokenizer, store, settings.max_length, device)
        self.val_indices = fixed_subset(len(val), settings.val_samples, settings.seed)
        self.attention_indices = attention_samples(val, self.val_indices, settings.attention_samples)
        self.optimizer = torch.optim.AdamW(optimizer_groups(self.model, settings))
        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer, settings.warmup_steps, settings.steps)
        self.mode = training_mode(model, settings.mode)
        self.step = 0
        distributed.seed_rank(settings.seed)

    def backward(self, indices: Sequence[int]) -> list[float]:
        """Forward and backward over this rank's `indices`, the loss weighted by their share of the
        step's supervised tokens. Returns the sums the step's log row is made of: loss, loss_fine
        and loss_coarse times tokens, tokens, whether each pass ran, entropy times frames, frames."""
        batch = self.train_batches(indices, self.settings.loss) if indices else None
        tokens = float(batch["loss_mask"][:, 1:].sum()) if batch else 0.0
        (step_tokens,) = distributed.sum_over_ranks([tokens])
        if batch is None:  # a short last batch leaves this rank nothing: it adds zero
            return [0.0] * 8
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            out = self.model(**batch, mode=self.mode, lambda_coarse=self.settings.lambda_coarse)
        (out.loss * (tokens / max(step_tokens, 1.0))).backward()  # one process: times 1
        weights = out.attention.get("fine", out.attention.get("coarse"))
        real = batch["frame_mask"]
        frames = float(real.sum()) if weights is not None else 0.0
        entropy = float(attention_entropy(weights[real].detach().float())) * frames if frames else 0.0
        fine, coarse = out.loss_fine, out.loss_coarse
        return [
            out.loss.item() * tokens,
            fine.item() * tokens if fine is not None else 0.0,
            coarse.item() * tokens if coarse is not None else 0.0,
            tokens,
            float(fine is not None),
            float(coarse is not None),
            entropy,
            frames,
        ]

    def train_step(self) -> dict[str, Any]:
        start = time.perf_counter()
        s = self.settings
        indices = self.order[self.step * s.batch_size : (self.step + 1) * s.batch_size]
        sums = self.backward(indices[distributed.rank() :: distributed.world_size()])
        loss, fine, coarse, tokens, has_fine, has_coarse, entropy, frames = distributed.sum_over_ranks(sums)
        trainable = [p for g in self.optimizer.param_groups for p in g["params"]]
        distributed.sum_gradients(trainable)
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, s.max_grad_norm)
        lrs = {f"lr/{g['name']}": g["lr"] for g in self.optimizer.param_groups}
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        tokens = max(tokens, 1.0)
        fine = fine / tokens if has_fine else None
        coarse = coarse / tokens if has_coarse else None
        return {
            "step": self.step,
            "samples": self.step * s.batch_size,
            "loss": loss / tokens,
            "loss_fine": fine,
            "loss_coarse": coarse,
            "loss_ratio": fine / coarse if fine is not None and coarse else None,
            "grad_norm": float(grad_norm),
            "attention_entropy": entropy / frames if frames else None,
            **lrs,
            "samples_per_s": len(indices) / (time.perf_counter() - start),
        }

    def evaluate(self, attention_dir: Path) -> dict[str, Any]:
        """Score the fixed val set in the training mode; keep the fixed samples' attention maps."""
        scores = evaluate(self.model, self.val_batches, self.val_indices, self.mode, EVAL_BATCH)
        if self.attention_indices and self.model.architecture == "foveated":
            save_attention(
                self.model,
                self.val_batches,
                self.attention_indices,
                self.mode,
                attention_dir / f"step-{self.step}.npz",
            )
        row = {"step": self.step, "samples": self.step * self.settings.batch_size}
        for key, value in scores.items():
            row[key.replace("accuracy", "val_accuracy")] = value
        return row

    def resume(self, checkpoint: Path) -> int:
        """Continue from this run's last saved state (or the one a kill left mid-swap)."""
        candidates = checkpoint_candidates(checkpoint)
        self.step = restore_latest(candidates, self.fingerprint, self.model, self.optimizer, self.scheduler)
        return self.step

    def run(self, run_dir: Path) -> None:
        """Train to the budget, logging, evaluating and checkpointing (rank 0 evaluates and writes)."""
        s = self.settings
        main = distributed.is_main()
        run_dir.mkdir(parents=True, exist_ok=True)
        log_path, evals_path, checkpoint = (
            run_dir / "log.jsonl",
            run_dir / "evals.jsonl",
            run_dir / "checkpoint",
        )
        attention_dir = run_dir / "attention"
        self.resume(checkpoint)
        if main:
            truncate_log(log_path, self.step)
            truncate_log(evals_path, self.step if self.step else -1)  # step 0 is evaluated again below
        if main and self.attention_indices and self.model.architecture == "foveated":
            save_frames(
                self.val_batches,
                self.attention_indices,
                self.image_processor,
                attention_dir / "frames.npz",
            )
        with (
            open(log_path if main else os.devnull, "a", encoding="utf-8") as log,
            open(evals_path if main else os.devnull, "a", encoding="utf-8") as evals,
        ):
            if self.step == 0 and main:
                evals.write(json.dumps(finite_or_null(self.evaluate(attention_dir))) + "\n")
            bar = tqdm(total=s.steps, initial=self.step, desc="train", unit="step", disable=not main)
            while self.step < s.steps:
                row = self.train_step()
                log.write(json.dumps(finite_or_null(row)) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{row['loss']:.3f}")
                bar.update(1)
                if main and (self.step % s.eval_every == 0 or self.step == s.steps):
                    evals.write(json.dumps(finite_or_null(self.evaluate(attention_dir))) + "\n")
                    evals.flush()
                if self.step % s.checkpoint_every == 0 or self.step == s.steps:
                    save_state(
                        checkpoint,
                        self.model,
                        self.optimizer,
                        self.scheduler,
                        self.step,
                        self.fingerprint,
                    )
                distributed.inject_kill(self.step)
            bar.close()

    def export(self, state_dir: Path, model_dir: Path, log: Path, evals: Path, attention: Path) -> None:
        """The trained model (with train.json: its settings) and copies of the logs and attention
        maps, each written atomically, where the workflow expects them."""
        self.model.save_pretrained(model_dir, self.tokenizer, self.image_processor)
        write_json(
            model_dir / "train.json",
            {
                "steps": self.settings.steps,
                "visual_tokens_per_frame": visual_tokens_per_frame(self.model),
                **asdict(self.settings),
            },
        )
        for source, target in ((state_dir / "log.jsonl", log), (state_dir / "evals.jsonl", evals)):
            with atomic_write(target, "wb") as handle:
                handle.write(source.read_bytes())
        with atomic_directory(attention) as tmp:
            if (state_dir / "attention").is_dir():
                shutil.copytree(state_dir / "attention", tmp, dirs_exist_ok=True)


def train_foveated(
    parts: dict[str, str],
    train: list[FrameSample],
    val: list[FrameSample],
    settings: FoveatedSettings,
    fingerprint: dict[str, Any],
    state: Path,
    outputs: dict[str, Path],
    device: str = "auto",
    gpus: int = 1,
) -> None:
    """Build a run's model from its `parts` (vision, language), train it to the budget in `state`
    (resuming what a killed job left there) and export `outputs` (`export`'s model_dir, log,
    evals, attention). With `gpus` > 1 in that many data-parallel processes: the same curve."""
    distributed.check_split("batch_size", settings.batch_size, gpus)
    if gpus > 1:
        distributed.launch(train_foveated, gpus, device, parts, train, val, settings, fingerprint, state, outputs)
        return
    model, tokenizer, processor = from_parts(parts["vision"], parts["language"], asdict(settings), settings.seed)
    trainer = FoveatedTrainer(model, tokenizer, processor, train, val, settings, fingerprint, pick_device(device)[0])
    logger.info("%d steps of %d samples (%s)", settings.steps, settings.batch_size, model.architecture)
    trainer.run(state)
    if distributed.is_main():
        trainer.export(state, **outputs)
    distributed.barrier()
