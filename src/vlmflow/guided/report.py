"""The guided-pruning family's tables and figures: accuracy against retention, per method, and the
per-question frame the early-exit sweep runs on, and the sweep's figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import polars as pl
import seaborn as sns

from vlmflow.core.figures import dodge, save_figure
from vlmflow.core.io import atomic_write, read_json
from vlmflow.core.records import Record
from vlmflow.core.tables import markdown
from vlmflow.data.vqa_metric import metric_score


def retention_frame(runs: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """One row per (method, keep ratio): the accuracy and the visual tokens kept on average.

    `runs` items: method, keep_ratio (None for the guide answering alone), metrics (path),
    visual_tokens (mean kept per question)."""
    rows = []
    for run in runs:
        metrics = read_json(run["metrics"])
        rows.append(
            {
                "method": run["method"],
                "keep_ratio": run["keep_ratio"],
                "visual_tokens": run["visual_tokens"],
                "n": metrics["n"],
                metrics["metric"]: metrics["accuracy"],
            }
        )
    return pl.DataFrame(rows, infer_schema_length=None).sort(
        ["method", "keep_ratio"], descending=[False, True], nulls_last=True
    )


def write_retention(
    frame: pl.DataFrame, title: str, csv_path: str | Path, md_path: str | Path, plot_path: str | Path
) -> None:
    """CSV, markdown and the accuracy-vs-retention plot (the guide alone as a dashed line)."""
    with atomic_write(csv_path, "wb") as handle:
        frame.write_csv(handle)
    with atomic_write(md_path) as handle:
        handle.write(markdown(frame, title))
    metric = frame.columns[-1]
    pruned = frame.filter(pl.col("keep_ratio").is_not_null())
    methods = sorted(pruned["method"].unique().to_list(), key=lambda method: (method == "guided", method))
    offsets = dodge(methods)  # equal accuracies (every method at keep 1) stay side by side
    shown = pruned.with_columns((pl.col("keep_ratio") * pl.col("method").replace_strict(offsets)).alias("shown"))
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(5.5, 3.6), constrained_layout=True)
    sns.lineplot(
        data=shown.to_pandas(),
        x="shown",
        y=metric,
        hue="method",
        hue_order=methods,  # guided drawn last, on top
        style="method",
        markers=True,
        dashes=False,
        ax=ax,
    )
    alone = frame.filter(pl.col("keep_ratio").is_null())
    if alone.height:
        ax.axhline(alone[metric][0], color="grey", linestyle="--", label="guide alone")
        ax.legend()
    ax.set(xscale="log", xlabel="share of visual tokens kept (log scale)", ylabel=metric.replace("_", " "), title=title)
    ratios = sorted(pruned["keep_ratio"].unique().to_list())
    ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
    ax.minorticks_off()
    save_figure(fig, plot_path)


def early_exit_frame(rows: Sequence[Mapping[str, Any]], records: Sequence[Record], metric: str) -> pl.DataFrame:
    """Per question and keep ratio: the guide's exit score, and whether the guide and the decode
    model (at that keep ratio) answered correctly."""
    answers = {r.question_id: r.answers for r in records}
    out = []
    for row in rows:
        truth = answers[row["question_id"]]
        guide_correct = metric_score(row["guide"]["prediction"], truth, metric)
        for label, answer in row["keep"].items():
            out.append(
                {
                    "question_id": row["question_id"],
                    "keep_ratio": float(label),
                    "score": row["guide"]["exit_score"],
                    "guide_correct": guide_correct,
                    "decode_correct": metric_score(answer["prediction"], truth, metric),
                }
            )
    return pl.DataFrame(out)


def plot_sweep(sweep: pl.DataFrame, output: str | Path, title: str) -> None:
    """Accuracy against the fraction of decode-model calls, one line per keep_ratio if present."""
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(5, 3.6), constrained_layout=True)
    if "keep_ratio" in sweep.columns:
        by_ratio = sweep.sort("keep_ratio").group_by("keep_ratio", maintain_order=True)
        groups = [(f"keep_ratio {ratio:g}", group) for (ratio,), group in by_ratio]
    else:
        groups = [(None, sweep)]
    for label, group in groups:
        x, y = group["decode_call_fraction"], group["accuracy"]
        sns.lineplot(x=x, y=y, ax=ax, estimator=None, marker="o", label=label)
    ax.set(xlim=(-0.02, 1.02), xlabel="fraction of questions sent to the decode model")
    ax.set(ylabel="accuracy", title=title)
    save_figure(fig, output)
