"""The foveated sweeps' tables: each run's logged curves read back, and the sensitivity table."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from vlmflow.core.io import atomic_write, read_json
from vlmflow.core.tables import markdown

WINDOW = 20  # steps averaged for the late loss ratio (and the curves' rolling mean)


def read_log(path: str | Path) -> pl.DataFrame:
    """The rows of a JSON-lines log, or an empty frame when the run has not written it."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return pl.DataFrame()
    return pl.read_ndjson(path, infer_schema_length=None)


def series(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """`step` and `column` (as floats) where the column is set; empty when the run lacks it."""
    if column not in frame.columns or "step" not in frame.columns:
        return pl.DataFrame(schema={"step": pl.Int64, column: pl.Float64})
    chosen = frame.select("step", pl.col(column).cast(pl.Float64))
    return chosen.drop_nulls(column).sort("step")


def _last(frame: pl.DataFrame, column: str) -> float | None:
    return frame[column][-1] if column in frame.columns and frame.height else None


def _run_row(run: str, run_dir: Path | None, eval_path: Path | None) -> dict[str, Any]:
    """The table row of one run; anything the run did not write stays null."""
    evals = read_log(run_dir / "evals.jsonl") if run_dir else pl.DataFrame()
    log = read_log(run_dir / "log.jsonl") if run_dir else pl.DataFrame()
    val_loss = series(evals, "val_loss")
    best = val_loss.row(val_loss["val_loss"].arg_min(), named=True) if val_loss.height else {}
    ratio = log.tail(WINDOW)["loss_ratio"].cast(pl.Float64) if "loss_ratio" in log.columns else None
    row: dict[str, Any] = {
        "run": run,
        "visual_tokens_per_frame": None,
        "val_loss": _last(evals, "val_loss"),
        "val_accuracy": _last(evals, "val_accuracy"),
        "min_val_loss": best.get("val_loss"),
        "min_val_loss_step": best.get("step"),
        "loss_ratio": ratio.mean() if ratio is not None else None,
        "max_grad_norm": log["grad_norm"].max() if "grad_norm" in log.columns else None,
        "mover_lift": _last(evals, "mover_lift"),
    }
    if eval_path is not None and eval_path.exists():
        result = read_json(eval_path)
        row["visual_tokens_per_frame"] = result["visual_tokens_per_frame"]
        for mode, values in result["modes"].items():
            row |= {f"{mode}/val_loss": values.get("val_loss"),
                    f"{mode}/accuracy": values.get("accuracy")}  # fmt: skip
    return row


def sweep_frame(evals: Mapping[str, Path], runs_logs: Mapping[str, Path]) -> pl.DataFrame:
    """One row per run (runs_logs order, then runs only evaluated): final and best validation
    loss, final accuracy, late loss ratio, worst gradient norm, the query's final attention on the
    moving shape against uniform (`mover_lift`) and each mode's final values."""
    names = list(dict.fromkeys([*runs_logs, *evals]))
    rows = [
        _run_row(name, Path(runs_logs[name]) if name in runs_logs else None,
                 Path(evals[name]) if name in evals else None)
        for name in names
    ]  # fmt: skip
    if all(value is None for row in rows for key, value in row.items() if key != "run"):
        raise ValueError(f"no run has evals.jsonl, log.jsonl or eval.json data: {names}")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    integers = {"visual_tokens_per_frame", "min_val_loss_step"}
    schema = {c: pl.String if c == "run" else pl.Int64 if c in integers else pl.Float64 for c in columns}
    return pl.DataFrame([{c: row.get(c) for c in columns} for row in rows], schema=schema)


def sweep_table(
    evals: Mapping[str, Path],
    runs_logs: Mapping[str, Path],
    output_csv: str | Path,
    output_md: str | Path,
) -> pl.DataFrame:
    """The LR / freeze sensitivity table as CSV and markdown; returns the frame written."""
    frame = sweep_frame(evals, runs_logs)
    with atomic_write(output_csv, "wb") as handle:
        frame.write_csv(handle)
    with atomic_write(output_md) as handle:
        handle.write(markdown(frame, float_format=".4g"))
    return frame
