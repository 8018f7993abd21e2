"""The overfit gate before a training run: a fresh copy must fit a handful of samples in a few
steps, or wrong labels, a broken prompt or a bad learning rate stop the run in minutes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vlmflow.core.records import Record
from vlmflow.core.settings import GenerationSettings, TrainSettings
from vlmflow.finetune.trainer import Trainer, load_for_training


def loss_reached(rows: Sequence[dict[str, float]], threshold: float) -> tuple[bool, float]:
    """Whether the loss went below `threshold`, and the lowest loss seen (a gate, not a curve fit)."""
    best = min((row["loss"] for row in rows), default=math.inf)
    return best < threshold, best


class SanityCheckFailed(RuntimeError):
    """The model could not overfit a handful of samples: training would waste the GPU hours."""


def sanity_overfit(
    base_path: str | Path,
    records: Sequence[Record],
    settings: TrainSettings,
    generation: GenerationSettings,
    *,
    samples: int,
    steps: int,
    threshold: float,
    log_path: Path,
    device: str = "auto",
) -> dict[str, Any]:
    """Train a fresh copy on the first `samples` records; fail unless the loss drops below
    `threshold` within `steps` steps (wrong labels or a broken prompt show up here, in minutes)."""
    subset = list(records[:samples])
    gate = TrainSettings(
        **{**asdict(settings), "steps": steps, "warmup_steps": min(settings.warmup_steps, steps // 10)}
    )
    model, processor = load_for_training(base_path, gate, device)
    trainer = Trainer(model, processor, subset, gate, generation, fingerprint={})
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("")
    rows = trainer.run(steps, log_path)
    passed, best = loss_reached(rows, threshold)
    report = {
        "passed": passed,
        "samples": len(subset),
        "steps": steps,
        "threshold": threshold,
        "first_loss": rows[0]["loss"],
        "best_loss": best,
        "final_loss": rows[-1]["loss"],
    }
    if not passed:
        raise SanityCheckFailed(
            f"sanity overfit failed: on {len(subset)} training samples the loss went from "
            f"{rows[0]['loss']:.3f} to at best {best:.3f} in {steps} steps, never below the threshold "
            f"{threshold}; training was not started. Check the supervised spans (the label check), the "
            "learning rate and the prompt format, or raise sanity.steps / sanity.threshold."
        )
    return report
