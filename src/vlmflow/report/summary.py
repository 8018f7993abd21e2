"""`results/summary.csv`: every experiment's metrics as one tidy table.

One row per (experiment, stage, metric) with the columns of `COLUMNS`, so a researcher can filter
and pivot with any dataframe library: `stage` says which part of an experiment a row measures
(`base` / `trained` model of a fine-tuning experiment, `step-300` of its training, a probing scale,
a control, a guided method and keep ratio), `kind` whether the value is a `result`, a `training`
statistic or a `timing`, and `n_of` what `n` counts (questions, pairs, steps, tokens, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from vlmflow.core.io import atomic_write, read_json

COLUMNS = ["experiment", "stage", "family", "model", "dataset", "metric", "kind", "value", "n", "n_of", "source"]
SCHEMA = {
    "experiment": pl.String,
    "stage": pl.String,
    "family": pl.String,
    "model": pl.String,
    "dataset": pl.String,
    "metric": pl.String,
    "kind": pl.String,
    "value": pl.Float64,
    "n": pl.Int64,
    "n_of": pl.String,
    "source": pl.String,
}
KINDS = ("result", "training", "timing")


def _base(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry[k] for k in ("experiment", "family", "model", "dataset", "source")} | {"stage": entry.get("stage")}


def accuracy_rows(entry: dict[str, Any], metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for one accuracy report: overall, per answer type, per question type, both-correct pairs."""
    base = _base(entry) | {"n_of": "questions"}
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
        rows.append(
            base | {"n": pairs["n"], "n_of": "pairs", "metric": f"{name}/both_correct", "value": pairs["accuracy"]}
        )
    if "format_adherence" in metrics:
        rows.append(base | {"n": metrics["n"], "metric": "format_adherence", "value": metrics["format_adherence"]})
    return rows


def training_rows(entry: dict[str, Any], log_path: str | Path) -> list[dict[str, Any]]:
    """Rows for one training log: first and final loss (mean of the last 10 steps), median throughput."""
    log = pl.read_ndjson(log_path)
    steps = log.height
    base = _base(entry) | {"stage": f"step-{steps}", "n": steps, "n_of": "steps"}
    return [
        base | {"metric": "train_loss_final", "kind": "training", "value": log["loss"].tail(10).mean()},
        base | {"metric": "train_loss_first", "kind": "training", "value": log["loss"][0]},
        base | {"metric": "train_samples_per_s", "kind": "timing", "value": log["samples_per_s"].median()},
    ]


def statistics_rows(entry: dict[str, Any], stats: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for a flat statistics file (e.g. attention-distribution differences): its numbers."""
    base = _base(entry) | {"n": stats.get("n"), "n_of": entry.get("n_of", "questions")}
    return [
        base | {"metric": key, "value": float(value)}
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
        rows.append({"experiment": f"{entry['experiment']}.{r['scale']}", "stage": r["scale"], "family": entry["family"],
                     "model": r["model"], "dataset": entry["dataset"], "n": r["n"],
                     "n_of": "quads" if r["unit"] == "quads" else "pairs", "metric": "/".join(parts),
                     "value": r["value"], "source": entry["source"]})  # fmt: skip
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
    """Read each entry's source (metrics.json or a training log) and write the tidy table atomically;
    a row that does not say its kind is a result."""
    rows = [row for entry in entries for row in entry_rows(entry)]
    frame = pl.DataFrame(rows, schema=SCHEMA).with_columns(
        pl.col("stage").fill_null(""), pl.col("kind").fill_null("result"), pl.col("n_of").fill_null("")
    )
    unknown = set(frame["kind"]) - set(KINDS)
    if unknown:
        raise ValueError(f"summary rows of unknown kind {sorted(unknown)} (expected one of {KINDS})")
    with atomic_write(output, "wb") as handle:
        frame.select(COLUMNS).write_csv(handle)
    return frame.select(COLUMNS)
