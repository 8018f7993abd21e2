"""Figures people would rather look at than tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from vlmflow.core.io import atomic_write


def save_figure(fig: plt.Figure, path: str | Path) -> None:
    """Write a figure as a PNG atomically and free it; the canvas grows to hold every title,
    legend and label drawn outside the axes, so none is cut."""
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120, bbox_inches="tight", pad_inches=0.08)
    plt.close(fig)


def spread(values: Sequence[float], gap: float) -> list[float]:
    """Positions for labels of `values` (in their order) at least `gap` apart: labels that would
    collide form a block centred on their values, the others stay where their values are."""
    blocks: list[list[int]] = []  # indices by value; each block's labels are stacked `gap` apart

    def bottom(block: list[int]) -> float:
        return sum(values[i] for i in block) / len(block) - (len(block) - 1) * gap / 2

    for i in sorted(range(len(values)), key=values.__getitem__):
        blocks.append([i])
        while len(blocks) > 1 and bottom(blocks[-2]) + len(blocks[-2]) * gap > bottom(blocks[-1]):
            blocks[-2:] = [blocks[-2] + blocks[-1]]
    placed = [0.0] * len(values)
    for block in blocks:
        for k, i in enumerate(block):
            placed[i] = bottom(block) + k * gap
    return placed


def dodge(keys: Sequence[str], factor: float = 1.05) -> dict[str, float]:
    """A multiplicative x offset per key, centred on 1, so lines that share points on a log axis
    stay visible side by side."""
    return {key: factor ** (i - (len(keys) - 1) / 2) for i, key in enumerate(keys)}
