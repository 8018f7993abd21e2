"""No network at run time: Hugging Face libraries load models and processors from local folders only."""

from __future__ import annotations

import os


def stay_offline() -> None:
    """Set `HF_HUB_OFFLINE=1` for this process and every job it starts (they inherit it, on SLURM
    too), so a missing file is an error, never a download. Called while the workflow is parsed,
    before any job imports a Hugging Face library (which reads the variable at import)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
