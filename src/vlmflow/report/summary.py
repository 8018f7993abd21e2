"""`results/summary.csv`: every experiment's metrics as one tidy table.

One row per (experiment, metric) with the columns experiment, family, model, dataset, n, metric,
value, source, so a researcher can filter and pivot with any dataframe library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from vlmflow.core.io import atomic_write, read_json

COLUMNS = ["experiment", "family", "model", "dataset", "n", "metric", "value", "source"]
SCHEMA = {
    "experiment": pl.String,
    "family": pl.String,
    "model": pl.String,
    "dataset": pl.String,
    "n": pl.Int64,
    "metric": pl.String,
    "value": pl.Float64,
    "source": pl.String,
}


def accuracy_rows(entry: dict[str, Any], metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for one accuracy report: overall, per answer type, per question type, both-correct pairs."""
    base = {k: entry[k] for k in ("experiment", "family", "model", "dataset")} | {"source": entry["source"]}
    name = metrics["metric"]
    rows = [base | {"n": metrics["n"], "metric": name, "value": metrics["accuracy"]}]
    for breakdown in ("answer_type", "question_type"):
        for key, group in sorted(metrics.get(f"per_{breakdown}", {}).items()):
            rows.append(base | {"n": group["n"], "metric": f"{name}/{breakdown}={key}", "value": group["accuracy"]})
    typed = metrics.get("typed")
    if typed:
        for average in ("micro", "macro"):
            rows.append(base | {"n": typed["n"], "metric": f"typed_accuracy/{average}", "value": typed[average]})
        for qtype, group in typed["per_type"].items():
            rows.append(base | {"n": group["n"], "metric": f"typed_accuracy/type={qtype}", "value": group["accuracy"]})
            if "f1" in group:
                rows.append(base | {"n": group["n"], "metric": f"typed_f1/type={qtype}", "value": group["f1"]})
    if "both_correct" in metrics:
        pairs = metrics["both_correct"]
        rows.append(base | {"n": pairs["n"], "metric": f"{name}/both_correct", "value": pairs["accuracy"]})
    if "format_adherence" in metrics:
        rows.append(base | {"n": metrics["n"], "metric": "format_adherence", "value": metrics["format_adherence"]})
    return rows


def training_rows(entry: dict[str, Any], log_path: str | Path) -> list[dict[str, Any]]:
    """Rows for one training log: steps, final loss (mean of the last 10 steps), median throughput."""
    log = pl.read_ndjson(log_path)
    base = {k: entry[k] for k in ("experiment", "family", "model", "dataset")} | {"source": entry["source"]}
    steps = log.height
    return [
        base | {"n": steps, "metric": "train_loss_final", "value": log["loss"].tail(10).mean()},
        base | {"n": steps, "metric": "train_loss_first", "value": log["loss"][0]},
        base | {"n": steps, "metric": "train_samples_per_s", "value": log["samples_per_s"].median()},
    ]


def statistics_rows(entry: dict[str, Any], stats: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for a flat statistics file (e.g. attention-distribution differences): its numbers."""
    base = {k: entry[k] for k in ("experiment", "family", "model", "dataset")} | {"source": entry["source"]}
    n = stats.get("n")
    return [
        base | {"n": n, "metric": key, "value": float(value)}
        for key, value in stats.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and key not in ("n", "keep_ratio")
    ]


def probing_rows(entry: dict[str, Any], summary_path: str | Path) -> list[dict[str, Any]]:
    """Rows for a probing experiment: its summary CSV, one experiment per scale, the tag, unit and
    layer folded into the metric name (e.g. `sign_corrected_consistency/unit=vertical/layer=3`)."""
    rows = []
    for r in pl.read_csv(summary_path, schema_overrides={"scale": pl.String, "unit": pl.String}).iter_rows(named=True):
        parts = [r["metric"]] + ([f"tag={r['tag']}"] if r["tag"] != "all" else []) + [f"unit={r['unit']}"]
        parts += [f"layer={r['layer']}"] if r["layer"] is not None else []
        rows.append({"experiment": f"{entry['experiment']}.{r['scale']}", "family": entry["family"], "model": r["model"],
                     "dataset": entry["dataset"], "n": r["n"], "metric": "/".join(parts), "value": r["value"],
                     "source": entry["source"]})  # fmt: skip
    return rows


def entry_rows(entry: dict[str, Any]) -> list[dict[str, Any]]:
    kind = entry.get("kind", "accuracy")
    if kind == "training":
        return training_rows(entry, entry["source"])
    if kind == "probing":
        return probing_rows(entry, entry["source"])
    if kind == "table":  # already summary rows (a family that writes its own, e.g. foveated)
        return pl.read_csv(entry["source"], schema=SCHEMA).to_dicts()
    if kind == "statistics":
        return statistics_rows(entry, read_json(entry["source"]))
    return accuracy_rows(entry, read_json(entry["source"]))


def write_summary(entries: list[dict[str, Any]], output: str | Path) -> pl.DataFrame:
    """Read each entry's source (metrics.json or a training log) and write the tidy table atomically."""
    rows = [row for entry in entries for row in entry_rows(entry)]
    frame = pl.DataFrame(rows, schema=SCHEMA).select(COLUMNS)
    with atomic_write(output, "wb") as handle:
        frame.write_csv(handle)
    return frame
