"""The pretraining's figure: training loss and per-type accuracy against samples seen."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

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


def plot_pretraining(records: Sequence[dict[str, Any]], out_path: str | Path) -> None:
    """One panel of loss (the last scale's curve), one of accuracy per eval dataset."""
    records = sorted(records, key=lambda r: r["samples"])
    datasets = sorted({d for r in records for d in r["evaluation"]})
    fig, axes = plt.subplots(1, 1 + len(datasets), figsize=(4.2 * (1 + len(datasets)), 3.6), squeeze=False)
    curve = records[-1]["training_curve"]
    loss_axis = axes[0][0]
    loss_axis.plot([p["samples"] for p in curve], [p["loss"] for p in curve], color="tab:blue")
    loss_axis.set(xlabel="samples seen", ylabel="training loss", yscale="log", title=records[-1]["model"])
    for axis, dataset in zip(axes[0][1:], datasets, strict=True):
        for label, points in accuracy_series(records, dataset).items():
            style = {"linewidth": 2.5, "color": "black"} if label == "overall" else {"linewidth": 1.2}
            axis.plot([s for s, _ in points], [v for _, v in points], marker="o", label=label, **style)
        axis.set(xlabel="samples seen", ylabel="accuracy", ylim=(-0.02, 1.02), title=dataset)
        axis.set_xscale("symlog", linthresh=max(1, min(r["samples"] for r in records if r["samples"]) // 2))
        axis.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_figure(fig, out_path)
