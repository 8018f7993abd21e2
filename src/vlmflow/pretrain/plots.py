"""The pretraining's figure: training loss and per-type accuracy against samples seen."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

from vlmflow.core.figures import save_figure


def accuracy_series(records: Sequence[dict[str, Any]], dataset: str) -> dict[str, list[tuple[int, float]]]:
    """{line label: [(samples, accuracy)]} of one eval dataset over the scales: overall, each
    question type and (swap pairs) both-correct."""
    series: dict[str, list[tuple[int, float]]] = {}
    for record in sorted(records, key=lambda r: r["samples"]):
        result = record["evaluation"].get(dataset)
        if result is None:
            continue
        points = {"overall": result["accuracy"], **result["per_question_type"]}
        if "both_correct" in result:
            points["both correct"] = result["both_correct"]["accuracy"]
        for label, value in points.items():
            series.setdefault(label, []).append((record["samples"], value))
    return series


def scale_label(samples: int) -> str:
    """A scale's tick label: 0, 8k, 160k."""
    return f"{samples // 1000}k" if samples >= 1000 and samples % 1000 == 0 else str(samples)


def samples_axis_label(record: dict[str, Any]) -> str:
    """The samples axis' label; a continued pretraining (`init_from`) names the scale it continued."""
    source = record.get("init_from", {})
    if "samples" not in source:
        return "samples seen"
    return f"samples seen after {source['model']} {scale_label(source['samples'])}"


def evaluation_points(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per evaluated sample count: a shipped scale's own, or, where the provenance holds
    the run's evaluations along the way (the foveated parts), one per evaluation."""
    points = []
    for record in records:
        for row in record.get("evaluations", [record]):
            points.append({**record, "samples": row["samples"], "evaluation": row["evaluation"]})
    return points


def plot_pretraining(records: Sequence[dict[str, Any]], out_path: str | Path) -> None:
    """One panel of loss (the last scale's curve), one of accuracy per eval dataset with the scales
    (or evaluations) evenly spaced; lines that share a value are set a little apart, so none hides
    another."""
    records = sorted(evaluation_points(records), key=lambda r: r["samples"])
    datasets = sorted({d for r in records for d in r["evaluation"]})
    fig, axes = plt.subplots(1, 1 + len(datasets), figsize=(5.0 * (1 + len(datasets)), 3.6), squeeze=False)
    curve = records[-1]["training_curve"]
    loss_axis = axes[0][0]
    loss_axis.plot([p["samples"] for p in curve], [p["loss"] for p in curve], color="tab:blue")
    xlabel = samples_axis_label(records[-1])
    loss_axis.set(xlabel=xlabel, ylabel="training loss", yscale="log", title=records[-1]["model"])
    loss_axis.xaxis.set_major_formatter(FuncFormatter(lambda samples, _: scale_label(int(samples))))
    position = {record["samples"]: i for i, record in enumerate(records)}
    for axis, dataset in zip(axes[0][1:], datasets, strict=True):
        series = accuracy_series(records, dataset)
        for k, (label, points) in enumerate(series.items()):
            shift = (k - (len(series) - 1) / 2) * 0.03
            style = {"linewidth": 2.5, "color": "black", "zorder": 3} if label == "overall" else {"linewidth": 1.2}
            xs = [position[s] + shift for s, _ in points]
            axis.plot(xs, [v for _, v in points], marker="o", markersize=4, label=label, **style)
        axis.set(xlabel=xlabel, ylabel="accuracy", ylim=(-0.03, 1.03), title=dataset)
        axis.set_xticks(range(len(records)), [scale_label(r["samples"]) for r in records])
        axis.set_xlim(-0.4, len(records) - 0.6)
        axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    save_figure(fig, out_path)
