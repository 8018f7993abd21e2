"""Figures of the VL-conditioning study: each experiment's comparison grid and the per-layer
dimension analysis."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import seaborn as sns
from PIL import Image

from vlmflow.core.figures import save_figure

GRID_COLUMNS = 5
TOKEN_TYPES = ("full", "image_only", "text_only")


def _caption(entry: dict[str, Any]) -> str:
    """What made the image and how far it is from the reference encoder's."""
    if entry["alpha"] == 0:
        made = "reference encoder"
    else:
        made = (
            f"α={entry['alpha']:g} L{entry['hidden_layer']} {entry['token_selection']}\n{entry['normalization_mode']}"
        )
    return f"{made}\nstd {entry['blended_std']:.3g}  cos {entry['cosine_to_reference']:.2f}\nΔpx {entry['pixel_distance_to_reference']:.3f}"


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), np.float32) / 255


def comparison_grid(metadata: dict[str, Any], image_dir: str | Path, output: str | Path, title: str) -> None:
    """Every image of an experiment (rows of five), named and captioned with its recipe, its
    std, its cosine to the reference embeddings and its pixel distance to the reference encoder's
    image; under each, where it differs from that image (|Δ| averaged over RGB, one colour scale
    for the whole grid, so small changes are visible and comparable)."""
    results = metadata["results"]
    if not results:
        raise ValueError(f"{title}: no images to put in a grid")
    image_dir = Path(image_dir)
    reference = _pixels(image_dir / metadata["reference_image"])
    images = [_pixels(image_dir / entry["image"]) for entry in results]
    differences = [np.abs(image - reference).mean(axis=-1) for image in images]
    vmax = max(max(float(d.max()) for d in differences), 1e-6)
    columns = min(GRID_COLUMNS, len(results))
    rows = math.ceil(len(results) / columns)
    fig, axes = plt.subplots(
        2 * rows,
        columns,
        figsize=(2.4 * columns, 5.4 * rows),
        squeeze=False,
        constrained_layout=True,
    )
    for ax in axes.flat:
        ax.axis("off")
    for i, (entry, image, difference) in enumerate(zip(results, images, differences)):
        top, bottom = (
            axes[2 * (i // columns), i % columns],
            axes[2 * (i // columns) + 1, i % columns],
        )
        for ax in (top, bottom):
            ax.axis("on")
            ax.set(xticks=[], yticks=[])
        top.imshow(image, interpolation="nearest")
        top.set_title(entry["name"], fontsize=8)
        shown = bottom.imshow(difference, cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
        bottom.set_xlabel(_caption(entry), fontsize=7)  # a label, so the layout leaves room for it
    fig.colorbar(
        shown,
        ax=axes[1::2, :].ravel().tolist(),
        shrink=0.6,
        label="|Δ| to the reference encoder's image",
    )
    fig.suptitle(f"{title}: “{metadata['prompt']}”", fontsize=10)
    save_figure(fig, output)


def plot_dimensions(layers: pl.DataFrame, outliers: pl.DataFrame, output: str | Path, title: str) -> None:
    """Per layer and token type: the per-dimension std correlation with the reference encoder,
    the global std against the reference's, and the largest outlier ratio (its dimension named)."""
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6), constrained_layout=True)
    palette = dict(zip(TOKEN_TYPES, sns.color_palette("tab10", len(TOKEN_TYPES))))
    data = layers.to_pandas()
    panels = [
        ("std_correlation", "per-dimension std correlation with the reference", "Pearson r", "linear"),
        ("std", "global std", "std", "log"),
        ("max_ratio", "largest dimension std / median std", "ratio", "log"),
    ]
    for i, (ax, (column, panel_title, label, scale)) in enumerate(zip(axes, panels)):
        sns.lineplot(data=data, x="layer", y=column, hue="token_type", palette=palette, marker="o", ax=ax,
                     legend=i == 0)  # fmt: skip
        ax.set(title=panel_title, ylabel=label, yscale=scale)
    axes[1].axhline(layers["reference_std"][0], color="black", linestyle="--", linewidth=1, label="reference encoder")
    axes[1].legend(loc="best", fontsize=7)
    top = outliers.filter((pl.col("rank") == 1) & (pl.col("token_type") == "image_only"))
    for row in top.iter_rows(named=True):
        axes[2].annotate(
            f"d{row['dim']}",
            (row["layer"], row["ratio"]),
            fontsize=6,
            xytext=(2, 3),
            textcoords="offset points",
        )
    fig.suptitle(title)
    save_figure(fig, output)
