"""Optional experiment tracking: the training step log mirrored to a wandb run in offline mode.

Cluster nodes rarely reach the internet, so the run is written next to the training state and
uploaded later with `wandb sync <run_dir>/wandb/offline-run-*`. The JSONL step log stays the record
of truth; wandb is a view of it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


class OfflineWandbRun:
    """One wandb run per fine-tuning experiment: a resumed job appends to the same run id."""

    def __init__(self, directory: Path, name: str, config: dict[str, Any]) -> None:
        try:
            import wandb
        except ImportError as err:
            raise RuntimeError(
                "finetune.experiments.*.wandb is true but the wandb package is not installed; "
                "pip install 'vlmflow[wandb]' or set wandb: false"
            ) from err
        directory.mkdir(parents=True, exist_ok=True)
        run_id = hashlib.sha1(str(directory.resolve()).encode()).hexdigest()[:16]
        self.run = wandb.init(
            mode="offline",
            dir=directory,
            project="vlmflow",
            name=name,
            id=run_id,
            resume="allow",
            config=config,
        )

    def log(self, row: dict[str, float]) -> None:
        self.run.log(dict(row), step=int(row["step"]))

    def finish(self) -> None:
        self.run.finish()
