"""Figures and the sensitivity table of the foveated-VLM sweeps (freeze, learning rate, query
ablations, the multi-token baseline), drawn from the files each training run leaves.

A run folder holds log.jsonl (one row per optimizer step), evals.jsonl (one row per evaluation),
attention/step-<n>.npz with attention/frames.npz (the fixed samples' query attention and pixels)
and eval.json (the final coarse-only / coarse+fine / autoregressive evaluation). Series a run does
not have (a multi-token run has no query, a coarse-only run no fine pass) are null or absent and
are skipped; a figure with no data in any run is an error rather than an empty picture.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from vlmflow.core.figures import save_figure, spread
from vlmflow.core.io import atomic_write, read_json
from vlmflow.foveated.sweeps import lower_is_better
from vlmflow.foveated.tables import WINDOW, read_log, series

MULTI_TOKEN_MODE = "multi_token"
MAX_FRAMES_SHOWN = 8
MAX_LABELLED_BARS = 16
_STEP_FILE = re.compile(r"step-(\d+)\.npz")

Point = tuple[str, int, float]


def _style() -> None:
    sns.set_theme(style="whitegrid", context="paper")


def _run_colours(names: Sequence[str]) -> dict[str, Any]:
    """One colour per run, the same in every panel of a figure."""
    palette = "tab10" if len(names) <= 10 else "husl"
    return dict(zip(names, sns.color_palette(palette, len(names))))


def rolling(values: pl.Series, window: int = WINDOW) -> pl.Series:
    """Rolling mean with the window capped at the series length, so short runs still draw."""
    return values.rolling_mean(window_size=max(1, min(window, values.len())), min_samples=1)


def _series_per_run(runs: Mapping[str, Path], file: str, column: str) -> dict[str, pl.DataFrame]:
    return {name: series(read_log(Path(folder) / file), column) for name, folder in runs.items()}


def _require(groups: Sequence[Mapping[str, pl.DataFrame]], what: str, runs: Sequence[str]) -> None:
    if not any(frame.height for group in groups for frame in group.values()):
        raise ValueError(f"no run has {what}: {list(runs)}")


def _draw(
    ax: plt.Axes,
    lines: Mapping[str, pl.DataFrame],
    column: str,
    colours: Mapping[str, Any],
    smooth: bool = True,
    suffix: str = "",
    **style: Any,
) -> None:
    """One line per run that has `column`, smoothed unless the points are sparse evaluations. Each
    run is drawn thinner than the one before, so runs that learn alike show as nested bands
    instead of one line hiding the others."""
    drawn = [(name, line) for name, line in lines.items() if line.height]
    for i, (name, line) in enumerate(drawn):
        width = 1.0 + 2.5 * (len(drawn) - 1 - i) / max(len(drawn) - 1, 1)
        values = rolling(line[column]) if smooth else line[column]
        sizes = {"linewidth": width, "markersize": 2.5 + 1.5 * width} | style
        ax.plot(line["step"], values, color=colours[name], label=name + suffix, **sizes)


def _figure_legend(fig: plt.Figure, axes: Sequence[plt.Axes]) -> None:
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(list(handles.values()), list(handles), loc="outside right center", title="run")


def plot_sweep_curves(runs: Mapping[str, Path], output: str | Path, title: str, metric: str = "val_loss") -> None:
    """Validation `metric` (left) and smoothed training loss (right), one colour per run: the
    freeze comparison and the foveated-vs-alternatives figure."""
    evals = _series_per_run(runs, "evals.jsonl", metric)
    losses = _series_per_run(runs, "log.jsonl", "loss")
    _require([evals, losses], f"{metric} in evals.jsonl or loss in log.jsonl", list(runs))
    _style()
    colours = _run_colours(list(runs))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), constrained_layout=True)
    _draw(axes[0], evals, metric, colours, smooth=False, marker="o")
    _draw(axes[1], losses, "loss", colours)
    axes[0].set(title=f"validation {metric}", xlabel="step", ylabel=metric)
    axes[1].set(title=f"training loss (rolling mean {WINDOW})", xlabel="step", ylabel="loss")
    _figure_legend(fig, axes)
    fig.suptitle(title)
    save_figure(fig, output)


def plot_loss_ratio(runs: Mapping[str, Path], output: str | Path) -> None:
    """Fine-pass over coarse-pass loss (below 1: the LM-chosen queries help) and the two losses
    themselves, fine solid and coarse dashed."""
    ratio = _series_per_run(runs, "log.jsonl", "loss_ratio")
    fine = _series_per_run(runs, "log.jsonl", "loss_fine")
    coarse = _series_per_run(runs, "log.jsonl", "loss_coarse")
    _require([ratio, fine, coarse], "loss_ratio, loss_fine or loss_coarse in log.jsonl", list(runs))
    _style()
    colours = _run_colours(list(runs))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), constrained_layout=True)
    _draw(axes[0], ratio, "loss_ratio", colours)
    axes[0].axhline(1.0, color="grey", ls="--", lw=1, label="fine = coarse")
    axes[0].set(title=f"loss_fine / loss_coarse (rolling mean {WINDOW})", xlabel="step", ylabel="")
    _draw(axes[1], fine, "loss_fine", colours)
    _draw(axes[1], coarse, "loss_coarse", colours, ls="--")
    axes[1].set(title="fine (solid) and coarse (dashed) loss", xlabel="step", ylabel="loss")
    passes = [Line2D([], [], color="black", label="fine"), Line2D([], [], color="black", ls="--", label="coarse")]
    axes[1].legend(handles=passes, fontsize=7)
    _figure_legend(fig, axes[:1])
    fig.suptitle("coarse-to-fine gain")
    save_figure(fig, output)


def attention_steps(run_dir: str | Path) -> list[tuple[int, Path]]:
    """The run's attention dumps, (eval step, path) in step order, whatever the zero-padding."""
    folder = Path(run_dir) / "attention"
    if not folder.is_dir():
        return []
    found = [(_STEP_FILE.fullmatch(p.name), p) for p in folder.iterdir()]
    return sorted((int(match.group(1)), path) for match, path in found if match)


def attention_tokens(run_dirs: Sequence[Path]) -> int | None:
    """Tokens per frame (CLS + patches) of the first attention dump of any run, if one exists."""
    for run_dir in run_dirs:
        dumps = attention_steps(run_dir)
        if dumps:
            with np.load(dumps[0][1]) as arrays:
                return int(arrays["coarse"].shape[-1])
    return None


def plot_attention_entropy(runs: Mapping[str, Path], output: str | Path) -> None:
    """Entropy of the query's attention per run (left; the uniform level log(tokens) is the
    ceiling a query that picks nothing would sit at) and, at each evaluation, its attention on the
    validation videos' moving shape over what uniform attention would give (right; 1 = uniform)."""
    entropy = _series_per_run(runs, "log.jsonl", "attention_entropy")
    lift = _series_per_run(runs, "evals.jsonl", "mover_lift")
    _require([entropy], "attention_entropy in log.jsonl", list(runs))
    _style()
    colours = _run_colours(list(runs))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), constrained_layout=True)
    _draw(axes[0], entropy, "attention_entropy", colours)
    tokens = attention_tokens([Path(folder) for folder in runs.values()])
    if tokens:
        axes[0].axhline(math.log(tokens), color="grey", ls=":", label=f"uniform (log {tokens})")
    axes[0].set(title=f"attention entropy (rolling mean {WINDOW})", xlabel="step", ylabel="nats")
    _draw(axes[1], lift, "mover_lift", colours, smooth=False, marker="o")
    axes[1].axhline(1.0, color="grey", ls=":", label="uniform")
    axes[1].set(title="attention on the moving shape / uniform", xlabel="step", ylabel="lift")
    _figure_legend(fig, axes)
    save_figure(fig, output)


def best_mode(result: Mapping[str, Any]) -> str:
    """The mode a run is judged by: the baseline's only mode, else coarse+fine when evaluated,
    else coarse only."""
    if result["architecture"] == MULTI_TOKEN_MODE:
        return MULTI_TOKEN_MODE
    return "coarse_fine" if "coarse_fine" in result["modes"] else "coarse_only"


def frontier_points(evals: Mapping[str, Path], metric: str = "accuracy") -> list[Point]:
    """(run, visual tokens per frame, metric of its best mode) for each run that has the value."""
    points = []
    for run, path in evals.items():
        if not Path(path).exists():
            continue
        result = read_json(path)
        value = result["modes"].get(best_mode(result), {}).get(metric)
        if value is not None:
            points.append((run, int(result["visual_tokens_per_frame"]), float(value)))
    return points


def pareto(points: Sequence[Point], lower_is_better: bool) -> list[Point]:
    """The points no run beats with as many or fewer tokens, by increasing token count."""
    sign = 1.0 if lower_is_better else -1.0
    frontier: list[Point] = []
    for point in sorted(points, key=lambda p: (p[1], sign * p[2])):
        if not frontier or sign * point[2] < sign * frontier[-1][2]:
            frontier.append(point)
    return frontier


def plot_token_frontier(evals: Mapping[str, Path], output: str | Path, metric: str = "accuracy") -> None:
    """The token-efficiency frontier: each run's best-mode `metric` against its visual tokens per
    frame, with the Pareto frontier as a step line."""
    points = frontier_points(evals, metric)
    if not points:
        raise ValueError(f"no eval.json has {metric} for its best mode: {list(evals)}")
    _style()
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    frontier = pareto(points, lower_is_better(metric))
    widest = max(tokens for _, tokens, _ in points)
    xs = [tokens for _, tokens, _ in frontier] + [widest]
    ys = [value for _, _, value in frontier] + [frontier[-1][2]]
    ax.step(xs, ys, where="post", color="grey", ls="--", label="Pareto frontier")
    values = [value for _, _, value in points]
    gap = 0.055 * ((max(values) - min(values)) or 1.0)  # one label's height, in data units
    for tokens in {tokens for _, tokens, _ in points}:  # runs of one token count share a column
        column = [(run, value) for run, t, value in points if t == tokens]
        ax.scatter([tokens] * len(column), [value for _, value in column], color="C0", zorder=3)
        for (run, value), label_y in zip(column, spread([value for _, value in column], gap), strict=True):
            ax.annotate(run, (tokens, value), xytext=(tokens * 1.15, label_y), textcoords="data", fontsize=8,
                        va="center", arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5})  # fmt: skip
    ticks = sorted({tokens for _, tokens, _ in points})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(ticks[0] / 1.6, ticks[-1] * 1.6)
    better = "lower" if lower_is_better(metric) else "higher"
    ax.set(title=f"token efficiency ({better} is better)", xlabel="visual tokens per frame")
    ax.set_ylabel(f"{metric} (best mode)")
    ax.legend(fontsize=8)
    save_figure(fig, output)


def patch_map(weights: np.ndarray, grid: int) -> np.ndarray:
    """One frame's attention (heads, 1 CLS + grid*grid tokens) as a (grid, grid) map over the
    patches: heads averaged, CLS dropped, so it sums to 1 minus the CLS share."""
    mean = np.asarray(weights, dtype=np.float64).mean(axis=0)
    if mean.shape[-1] != 1 + grid * grid:
        raise ValueError(f"{mean.shape[-1]} tokens is not 1 CLS + {grid}x{grid} patches")
    return mean[1:].reshape(grid, grid)


def grid_size(tokens: int) -> int:
    """The patch grid side of a frame with `tokens` = 1 CLS + grid*grid patches."""
    grid = math.isqrt(tokens - 1)
    if grid * grid != tokens - 1:
        raise ValueError(f"{tokens} tokens is not 1 CLS + a square grid of patches")
    return grid


def _blank(ax: plt.Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def _overlay(ax: plt.Axes, pixels: np.ndarray | None, attention: np.ndarray) -> None:
    """The frame with its patch attention stretched over it; the map alone without pixels."""
    height, width = pixels.shape[:2] if pixels is not None else attention.shape
    if pixels is not None:
        ax.imshow(pixels)
    extent = (0, width, height, 0)
    alpha = 0.5 if pixels is not None else 1.0
    ax.imshow(attention, cmap="magma", alpha=alpha, extent=extent, interpolation="bilinear")


def _heatmap_rows(run_dir: Path, samples: int) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(row label, sample id, attention (frames, heads, tokens), frame mask) per figure row:
    each sample's first and last dump, coarse then fine."""
    dumps = attention_steps(run_dir)
    if not dumps:
        raise ValueError(f"no attention/step-<n>.npz in {run_dir}")
    chosen = [dumps[0], dumps[-1]] if len(dumps) > 1 else dumps
    loaded = []
    for step, path in chosen:
        with np.load(path) as arrays:
            passes = {name: arrays[name] for name in ("coarse", "fine") if name in arrays}
            ids = [str(sid) for sid in arrays["sample_ids"]]
            loaded.append((step, passes, arrays["frame_mask"], ids))
    rows = []
    for index in range(min(samples, len(loaded[0][3]))):
        for step, passes, mask, ids in loaded:
            for name, attention in passes.items():
                label = f"{ids[index]} {name} @step {step}"
                rows.append((label, ids[index], attention[index], mask[index]))
    return rows


def _frame_pixels(run_dir: Path) -> dict[str, np.ndarray]:
    """Each fixed sample's frames by sample id; empty when the run saved no frames."""
    path = run_dir / "attention" / "frames.npz"
    if not path.exists():
        return {}
    with np.load(path) as arrays:
        return {str(sid): pixels for sid, pixels in zip(arrays["sample_ids"], arrays["pixels"])}


def plot_attention_heatmaps(run_dir: str | Path, output: str | Path, samples: int = 4) -> None:
    """Where each frame's query looks, at the first and last evaluation: a row per (sample, step,
    pass), a column per frame (padded frames blank, at most 8)."""
    run_dir = Path(run_dir)
    rows = _heatmap_rows(run_dir, samples)
    pixels = _frame_pixels(run_dir)
    frames = min(MAX_FRAMES_SHOWN, rows[0][2].shape[0])
    grid = grid_size(rows[0][2].shape[-1])
    _style()
    fig, axes = plt.subplots(len(rows), frames, figsize=(1.4 * frames + 2.2, 1.4 * len(rows)),
                             squeeze=False, constrained_layout=True)  # fmt: skip
    for r, (label, sample_id, attention, mask) in enumerate(rows):
        sample_pixels = pixels.get(sample_id)
        for t in range(frames):
            ax = axes[r][t]
            _blank(ax)
            if mask[t]:
                image = sample_pixels[t] if sample_pixels is not None else None
                _overlay(ax, image, patch_map(attention[t], grid))
            if r == 0:
                ax.set_title(f"frame {t}", fontsize=8)
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(f"query attention over patches: {run_dir.name}")
    save_figure(fig, output)


def mode_values(evals: Mapping[str, Path], metrics: Sequence[str]) -> pl.DataFrame:
    """Long rows (run, mode, metric, value) of every eval.json value that is set."""
    rows = []
    for run, path in evals.items():
        if not Path(path).exists():
            continue
        for mode, values in read_json(path)["modes"].items():
            for metric in metrics:
                if values.get(metric) is not None:
                    rows.append({"run": run, "mode": mode, "metric": metric,
                                 "value": float(values[metric])})  # fmt: skip
    schema = {"run": pl.String, "mode": pl.String, "metric": pl.String, "value": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def _grouped_bars(ax: plt.Axes, values: pl.DataFrame, colours: Mapping[str, Any]) -> None:
    """A group of bars per run, centred on the run, as many bars as the run has modes; the values
    written on the bars while they fit (up to MAX_LABELLED_BARS)."""
    runs = list(dict.fromkeys(values["run"]))
    labelled = values.height <= MAX_LABELLED_BARS
    width = 0.8 / max(values.group_by("run").len()["len"].max(), 1)
    for i, run in enumerate(runs):
        chosen = values.filter(pl.col("run") == run)
        for j, (mode, value) in enumerate(zip(chosen["mode"], chosen["value"])):
            x = i + (j - (chosen.height - 1) / 2) * width
            bars = ax.bar(x, value, width=width, color=colours[mode], label=mode)
            if labelled:
                ax.bar_label(bars, fmt="%.3g", fontsize=6)
    ax.set_xticks(range(len(runs)), runs)


def plot_three_modes(
    evals: Mapping[str, Path], output: str | Path, metrics: Sequence[str] = ("val_loss", "accuracy")
) -> None:
    """The final evaluation per run: coarse only, coarse+fine and autoregressive side by side
    (the multi-token baseline's single mode alone), a panel per metric."""
    values = mode_values(evals, metrics)
    if not values.height:
        raise ValueError(f"no eval.json has any of {list(metrics)}: {list(evals)}")
    _style()
    modes = list(dict.fromkeys(values["mode"]))
    colours = dict(zip(modes, sns.color_palette("Set2", len(modes))))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.8),
                             squeeze=False, constrained_layout=True)  # fmt: skip
    for ax, metric in zip(axes[0], metrics):
        chosen = values.filter(pl.col("metric") == metric)
        if chosen.height:
            _grouped_bars(ax, chosen, colours)
        ax.set(title=metric, ylabel=metric)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[m]) for m in modes]
    fig.legend(handles, modes, loc="outside right center", title="mode")
    fig.suptitle("final evaluation per mode")
    save_figure(fig, output)


def skipped_sweep(reason: str, curves: str | Path, output_csv: str | Path, output_md: str | Path) -> None:
    """The outputs of a sweep that was not run: a figure and tables that say why."""
    _style()
    fig, ax = plt.subplots(figsize=(6, 1.6))
    _blank(ax)
    ax.text(0.5, 0.5, reason, ha="center", va="center", wrap=True)
    save_figure(fig, curves)
    with atomic_write(output_csv) as handle:
        handle.write("run,skipped\n")
    with atomic_write(output_md) as handle:
        handle.write(f"Skipped: {reason}\n")
