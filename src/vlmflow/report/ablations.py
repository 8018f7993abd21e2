"""Ablation tables: experiments that differ in one setting, side by side in one table.

The seeds report their ablations (answer modes, constrained vs free decoding) as small tables; the
workflow writes each configured comparison as CSV and markdown from the experiments' metrics.json,
so the table a paper needs is an output with its own dependencies, not a notebook cell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from vlmflow.core.io import atomic_write, read_json
from vlmflow.core.tables import markdown

SETTINGS_SHOWN = ("model", "dataset", "mode", "decoding")


def ablation_frame(
    experiments: Sequence[str], settings: Mapping[str, Mapping[str, Any]], metrics_paths: Sequence[str | Path]
) -> pl.DataFrame:
    """One row per experiment: its distinguishing settings, the primary metric, the per-type
    micro / macro accuracy, format adherence, and one column per inferred question type."""
    rows = []
    for name, path in zip(experiments, metrics_paths, strict=True):
        metrics = read_json(path)
        typed = metrics["typed"]
        row: dict[str, Any] = {"experiment": name, **{k: settings[name][k] for k in SETTINGS_SHOWN}}
        row |= {"n": metrics["n"], metrics["metric"]: metrics["accuracy"]}
        row |= {"typed_micro": typed["micro"], "typed_macro": typed["macro"]}
        row["format_adherence"] = metrics.get("format_adherence")
        row |= {qtype: block["accuracy"] for qtype, block in typed["per_type"].items()}
        rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None)


def write_ablation(frame: pl.DataFrame, title: str, csv_path: str | Path, md_path: str | Path) -> None:
    with atomic_write(csv_path, "wb") as handle:
        frame.write_csv(handle)
    with atomic_write(md_path) as handle:
        handle.write(markdown(frame, title))
