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
    """What made the image, how far it is from the reference encoder's, and whose colour it shows
    (the prompt's, the VLM picture's or neither)."""
    if entry["alpha"] == 0:
        made = "reference encoder"
    else:
        made = (
            f"α={entry['alpha']:g} L{entry['hidden_layer']} {entry['token_selection']}\n{entry['normalization_mode']}"
        )
    numbers = f"std {entry['blended_std']:.3g}  cos {entry['cosine_to_reference']:.2f}\nΔpx {entry['pixel_distance_to_reference']:.3f}"
    if "dominant_colour" not in entry:  # made before the caption-following measure
        return f"{made}\n{numbers}"
    follows = "prompt's ✓" if entry["colour_follows_caption"] else ("image's" if entry["colour_follows_image"] else "✗")
    return f"{made}\n{numbers}\n{entry['dominant_colour']}: {follows}"


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


def plot_following(rates: pl.DataFrame, rows: list[dict[str, Any]], image_dir: str | Path, output: str | Path,
                   captions_shown: int) -> None:  # fmt: skip
    """Left: per recipe, the share of pictures showing the caption's colour, the caption's side,
    and the VLM picture's colour instead. Right: the first captions' pictures, one row per caption
    and one column per recipe, so what each recipe does to a picture can be seen."""
    recipes = rates["recipe"].to_list()
    captions = list(dict.fromkeys(row["caption"] for row in rows))[:captions_shown]
    by_key = {(row["recipe"], row["caption"]): row for row in rows}
    fig = plt.figure(figsize=(5.5 + 1.3 * len(recipes), max(3.6, 1.3 * len(captions) + 0.8)), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[5.5, 1.3 * len(recipes)])
    axis = left.subplots()
    long = rates.unpivot(index="recipe", on=["colour_follows_caption", "side_follows_caption", "colour_follows_image"])
    sns.barplot(long.to_pandas(), y="recipe", x="value", hue="variable", ax=axis, orient="h")
    axis.set(xlim=(0, 1), xlabel=f"share of pictures (n = {rates['n'][0]} captions)", ylabel="")
    axis.legend(fontsize=7, loc="lower right")
    grid = right.subplots(len(captions), len(recipes), squeeze=False)
    for r, caption in enumerate(captions):
        for c, recipe in enumerate(recipes):
            cell = grid[r][c]
            cell.set(xticks=[], yticks=[])
            row = by_key[(recipe, caption)]
            cell.imshow(_pixels(Path(image_dir) / row["picture"]), interpolation="nearest")
            mark = "✓" if row["colour_follows_caption"] else "✗"
            cell.set_xlabel(f"{row['dominant_colour']} {mark}", fontsize=7)
            if r == 0:
                cell.set_title(recipe, fontsize=7)
            if c == 0:
                cell.set_ylabel(caption.replace(" with", "\nwith"), fontsize=6)
    fig.suptitle("caption following: the colour (and side) a caption names, in the picture", fontsize=10)
    save_figure(fig, output)


def plot_pipeline_pretraining(record: dict[str, Any], output: str | Path) -> None:
    """One panel per part of the pretrained pipeline: its training loss against samples seen,
    titled with its objective; the shipped pipeline's evaluation in the figure's title."""
    language_lr = record["config"]["vlm"].get("language_lr")
    objectives = {
        "text_encoder": "language modelling",
        "vae": "reconstruction + KL",
        "transformer": "flow matching",
        "vlm": "captioning" + (f" (LM at lr {language_lr:g})" if language_lr else " (tower only)"),
    }
    parts = record["parts"]
    fig, axes = plt.subplots(1, len(parts), figsize=(3.6 * len(parts), 3.2), squeeze=False, layout="constrained")
    for axis, (part, trained) in zip(axes[0], parts.items(), strict=True):
        curve = trained["training_curve"]
        axis.plot([p["samples"] for p in curve], [p["loss"] for p in curve], color="tab:blue")
        axis.set(xlabel="samples seen", ylabel="training loss", yscale="log")
        axis.set_title(f"{part}: {objectives.get(part, '')}", fontsize=9)
    following = record["evaluation"]["caption_following"]
    captioning = record["evaluation"]["captioning"]
    fig.suptitle(
        f"{record['model']}: the named colour dominates {following['colour_follows_caption']:.0%} of the reference "
        f"encoder's pictures (side {following['side_follows_caption']:.0%}, n = {following['n']}); "
        f"the VLM's captions exact {captioning['exact_match']:.0%}, colour {captioning['colour_named']:.0%}",
        fontsize=9,
    )
    save_figure(fig, output)
