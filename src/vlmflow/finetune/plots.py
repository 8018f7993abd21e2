"""Training curves: loss, gradient norm and learning rate per optimizer step."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import polars as pl
import seaborn as sns

from vlmflow.core.figures import save_figure


def plot_training_log(log_path: str | Path, output: str | Path, title: str) -> None:
    """Loss, gradient norm and per-group learning rate against the optimizer step."""
    log = pl.read_ndjson(log_path)
    lr_columns = [c for c in log.columns if c.startswith("lr/")]
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), constrained_layout=True)
    sns.lineplot(x=log["step"], y=log["loss"], ax=axes[0], alpha=0.35, label="per step")
    smooth = log["loss"].rolling_mean(window_size=min(20, log.height), min_samples=1)
    sns.lineplot(x=log["step"], y=smooth, ax=axes[0], label="rolling mean (20)")
    axes[0].set(title="loss", xlabel="step", ylabel="cross-entropy (answer tokens)")
    sns.lineplot(x=log["step"], y=log["grad_norm"], ax=axes[1])
    axes[1].set(title="gradient norm (before clipping)", xlabel="step", ylabel="")
    for column in lr_columns:
        sns.lineplot(x=log["step"], y=log[column], ax=axes[2], label=column.removeprefix("lr/"))
    axes[2].set(title="learning rate", xlabel="step", ylabel="")
    fig.suptitle(title)
    save_figure(fig, output)
