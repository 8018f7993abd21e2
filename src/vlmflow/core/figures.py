"""Figures people would rather look at than tables."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from vlmflow.core.io import atomic_write


def save_figure(fig: plt.Figure, path: str | Path) -> None:
    """Write a figure as a PNG atomically and free it."""
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)
