"""The swap-pair analysis in pictures (seed 004): PCA of the deltas per layer, consistency and
cross-group alignment against layer per scale, accuracy per scale, and the one-glance ablation.

Every figure that compares scales shares one y-range across its panels (the seed unified them
after the fact), and each category keeps one colour everywhere: a group's two categories are a
dark and a light shade of one hue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from vlmflow.core.figures import save_figure
from vlmflow.data.swap_pairs import AXES, CATEGORIES
from vlmflow.probing.metrics import centre

_PAIRED = sns.color_palette("Paired", 6)  # (light, dark) x 3 hues
CATEGORY_COLOURS: dict[str, tuple[float, float, float]] = {
    word: _PAIRED[2 * g + (1 - k)] for g, pair in enumerate(AXES.values()) for k, word in enumerate(pair)
}
GROUPS = tuple(AXES)


def _style() -> None:
    sns.set_theme(style="whitegrid", context="paper")


def _integer_layers(ax: plt.Axes) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def principal_components(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Centred rows projected on their top-k principal axes, and each axis's share of variance."""
    centred = centre(vectors)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2
    share = variance[:k] / variance.sum() if variance.sum() > 0 else np.zeros(min(k, len(variance)))
    return centred @ axes[:k].T, share


def plot_pca(arrays: Mapping[str, np.ndarray], title: str, path: str | Path, dims: int = 2) -> None:
    """One panel per layer: every pair's delta on the top `dims` principal axes, coloured by category."""
    _style()
    layers = [int(n) for n in arrays["layers"]]
    categories = np.asarray([str(c) for c in arrays["category"]])
    cols = min(4, len(layers))
    rows = -(-len(layers) // cols)
    fig = plt.figure(figsize=(3.6 * cols, 3.3 * rows), constrained_layout=True)
    for i, layer in enumerate(layers):
        ax = fig.add_subplot(rows, cols, i + 1, **({"projection": "3d"} if dims == 3 else {}))
        deltas = arrays[f"delta_L{layer}"].astype(np.float64)
        if len(deltas) <= dims:
            ax.set_title(f"L{layer}: too few pairs")
            continue
        points, share = principal_components(deltas, dims)
        for category in CATEGORIES:
            chosen = categories == category
            if chosen.any():
                ax.scatter(*points[chosen].T, s=14, color=CATEGORY_COLOURS[category], label=category)
        ax.set_title(f"L{layer} (PC1-{dims}: {share.sum():.0%} of variance)", fontsize=9)
        ax.set_xlabel("PC1")
        ax.set_ylabel("PC2")
        if dims == 3:
            ax.set_zlabel("PC3")
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", title="category")
    fig.suptitle(title)
    save_figure(fig, path)


def _scale_colours(fig: plt.Figure, scales: Sequence[str], title: str) -> dict[str, tuple[float, float, float]]:
    """One viridis colour per scale, in order, and the figure's legend of them."""
    palette = dict(zip(scales, sns.color_palette("viridis", len(scales))))
    handles = [plt.Line2D([], [], color=palette[s], marker="o", label=s) for s in scales]
    fig.legend(handles=handles, loc="outside right center", title=title)
    return palette


def _ordered(frame: pl.DataFrame, scales: Sequence[str]) -> pl.DataFrame:
    order = {scale: i for i, scale in enumerate(scales)}
    return frame.with_columns(pl.col("scale").replace_strict(order, return_dtype=pl.Int64).alias("_order")).sort(
        "_order"
    )


def plot_consistency(summary: pl.DataFrame, scales: Sequence[str], metric: str, path: str | Path) -> None:
    """`metric` (within_cat_consistency or sign_corrected_consistency) against layer, a line per
    scale, a panel per unit (category or group), a row per tag; one y-range for all panels."""
    _style()
    data = _ordered(summary.filter(pl.col("metric") == metric, pl.col("value").is_not_null()), scales)
    units = [u for u in (*CATEGORIES, *GROUPS) if u in set(data["unit"])]
    tags = [t for t in ("all", "both_correct") if t in set(data["tag"])] or ["all"]
    fig, axes = plt.subplots(len(tags), max(1, len(units)), figsize=(2.8 * max(1, len(units)), 2.7 * len(tags)),
                             sharex=True, sharey=True, squeeze=False, constrained_layout=True)  # fmt: skip
    palette = _scale_colours(fig, scales, "scale")
    for r, tag in enumerate(tags):
        for c, unit in enumerate(units):
            ax = axes[r][c]
            chosen = data.filter(pl.col("tag") == tag, pl.col("unit") == unit)
            for scale in scales:
                line = chosen.filter(pl.col("scale") == scale).sort("layer")
                if line.height:
                    ax.plot(line["layer"], line["value"], marker="o", color=palette[scale], label=scale)
            ax.axhline(0, color="grey", lw=0.6)
            ax.set_title(f"{unit} ({tag})", fontsize=9)
            ax.set_xlabel("layer")
            _integer_layers(ax)
        axes[r][0].set_ylabel("mean pairwise cosine")
    fig.suptitle(metric.replace("_", " "))
    save_figure(fig, path)


def plot_alignment(summary: pl.DataFrame, scales: Sequence[str], path: str | Path) -> None:
    """Cross-group alignment (mean per-quad cosine) against layer per scale, per tag; filled
    markers where the permutation p-value is below 0.05."""
    _style()
    data = _ordered(summary.filter(pl.col("metric").is_in(["cross_alignment", "cross_alignment_p"])), scales)
    wide = data.pivot(on="metric", index=["scale", "tag", "layer", "_order"], values="value").sort("_order", "layer")
    tags = ("all", "both_correct")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True, constrained_layout=True)
    palette = _scale_colours(fig, scales, "scale (filled: p < 0.05)")
    for ax, tag in zip(axes, tags):
        _integer_layers(ax)
        if (
            "cross_alignment" not in wide.columns
            or not wide.filter(pl.col("tag") == tag, pl.col("cross_alignment").is_not_null()).height
        ):
            ax.text(0.5, 0.5, "fewer than 2 quads", ha="center", va="center", transform=ax.transAxes)
        else:
            for scale in scales:
                line = wide.filter(
                    pl.col("tag") == tag, pl.col("scale") == scale, pl.col("cross_alignment").is_not_null()
                )
                if not line.height:
                    continue
                ax.plot(line["layer"], line["cross_alignment"], color=palette[scale], label=scale)
                significant = (line["cross_alignment_p"] < 0.05).to_numpy()
                ax.scatter(line["layer"], line["cross_alignment"], edgecolors=[palette[scale]], zorder=3,
                           facecolors=[palette[scale] if s else "white" for s in significant])  # fmt: skip
        ax.axhline(0, color="grey", lw=0.6)
        ax.set(title=f"vertical x distance ({tag})", xlabel="layer", ylabel="mean cosine per quad")
    fig.suptitle("cross-group alignment")
    save_figure(fig, path)


def plot_accuracy(
    summary: pl.DataFrame, scales: Sequence[str], bars_path: str | Path, trajectory_path: str | Path
) -> None:
    """Bars: original / swapped / both-correct accuracy per group, a bar per scale. Trajectory:
    the same accuracies across scales, a line per group."""
    _style()
    data = _ordered(summary.filter(pl.col("metric").is_in(["orig_accuracy", "swap_accuracy", "both_accuracy"])), scales)
    frame = data.to_pandas()
    grid = sns.catplot(data=frame, kind="bar", x="unit", y="value", hue="scale", col="metric",
                       col_order=["orig_accuracy", "swap_accuracy", "both_accuracy"], order=[*GROUPS, "all"],
                       hue_order=list(scales), palette="viridis", height=3, aspect=1.2)  # fmt: skip
    grid.set(ylim=(0, 1), xlabel="", ylabel="accuracy")
    grid.figure.suptitle("swap-pair accuracy per scale", y=1.03)
    save_figure(grid.figure, bars_path)
    grid = sns.relplot(data=frame, kind="line", x="scale", y="value", hue="unit", col="metric", marker="o",
                       col_order=["orig_accuracy", "swap_accuracy", "both_accuracy"], hue_order=[*GROUPS, "all"],
                       height=3, aspect=1.2, sort=False)  # fmt: skip
    grid.set(ylim=(0, 1), ylabel="accuracy")
    grid.figure.suptitle("swap-pair accuracy across scales", y=1.03)
    save_figure(grid.figure, trajectory_path)


def plot_ablation(summary: pl.DataFrame, scales: Sequence[str], layer: int, path: str | Path) -> None:
    """Across scales at one layer: sign-corrected consistency per group, cross-group alignment,
    and both-correct accuracy per group."""
    _style()
    data = _ordered(summary.filter(pl.col("tag") == "all"), scales)
    panels = (
        ("sign_corrected_consistency", f"sign-corrected consistency (L{layer})", pl.col("layer") == layer),
        ("cross_alignment", f"cross-group alignment (L{layer})", pl.col("layer") == layer),
        ("both_accuracy", "both-correct accuracy", pl.col("layer").is_null()),
    )
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), constrained_layout=True)
    for ax, (metric, title, where) in zip(axes, panels):
        chosen = data.filter(pl.col("metric") == metric, where)
        for unit in [u for u in (*GROUPS, "all", "quads") if u in set(chosen["unit"])]:
            line = chosen.filter(pl.col("unit") == unit).sort("_order")
            ax.plot(line["scale"], line["value"], marker="o", label=unit)
        ax.axhline(0, color="grey", lw=0.6)
        ax.set(title=title, xlabel="scale", **({"ylim": (0, 1)} if metric == "both_accuracy" else {}))
        if chosen.height:
            ax.legend(fontsize=8)
    fig.suptitle("swap-pair analysis across scales")
    save_figure(fig, path)
