"""SGL's early exit (SEE): answer with the guide alone when it is confident and consistent.

The small guide model answers every question anyway; when its exit score (mean of answer
confidence and self-consistency) clears a threshold, its answer is used and the large decode model
is never called. The threshold is chosen offline from saved per-question scores and correctness:
each threshold is an operating point trading accuracy against the fraction of decode-model calls,
and the sweep lists them all so the choice is a table lookup rather than a rerun.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

REQUIRED_COLUMNS = ("score", "guide_correct", "decode_correct")
SWEEP_SCHEMA = pl.Schema(
    {
        "threshold": pl.Float64,
        "decode_call_fraction": pl.Float64,
        "accuracy": pl.Float64,
        "exited": pl.Int64,
    }
)


def exit_score(confidence: float, consistency: float) -> float:
    """The SEE exit score: mean of the guide's confidence and consistency."""
    return (confidence + consistency) / 2


def _sweep_group(group: pl.DataFrame, thresholds: Sequence[float] | None) -> pl.DataFrame:
    """Every threshold's operating point for one group of questions."""
    score = group["score"].to_numpy().astype(np.float64)
    guide = group["guide_correct"].to_numpy().astype(np.float64)
    decode = group["decode_correct"].to_numpy().astype(np.float64)
    if thresholds is None:
        above_max = score.max() + 1e-4  # no question exits; visibly above the max at 4 decimals
        thresholds = np.unique(np.concatenate([score, [0.0, above_max]]))
    rows = []
    for t in thresholds:
        exits = score >= t
        rows.append(
            {
                "threshold": float(t),
                "decode_call_fraction": float(1.0 - exits.mean()),
                "accuracy": float(np.where(exits, guide, decode).mean()),
                "exited": int(exits.sum()),
            }
        )
    return pl.DataFrame(rows, schema=SWEEP_SCHEMA)


def threshold_sweep(frame: pl.DataFrame, thresholds: Sequence[float] | None = None) -> pl.DataFrame:
    """Accuracy and decode-call fraction per threshold (per keep_ratio when the frame has one).

    A question exits early (guide answer, no decode call) when its score >= threshold. By default
    the thresholds are the unique scores plus 0.0 and a value just above the maximum.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"sweep frame lacks column(s) {', '.join(missing)}")
    if frame.is_empty():
        raise ValueError("sweep frame has no rows")
    if "keep_ratio" not in frame.columns:
        return _sweep_group(frame, thresholds).sort("threshold")
    parts = [
        _sweep_group(group, thresholds).select(pl.lit(float(ratio)).alias("keep_ratio"), pl.all())
        for (ratio,), group in frame.group_by("keep_ratio")
    ]
    return pl.concat(parts).sort("keep_ratio", "threshold")


def _table(group: pl.DataFrame, points: int) -> list[str]:
    """The rows nearest `points` evenly spaced decode-call fractions, as markdown lines."""
    fraction = group["decode_call_fraction"].to_numpy()
    targets = np.linspace(0.0, 1.0, points)
    picked = dict.fromkeys(int(np.argmin(np.abs(fraction - target))) for target in targets)
    lines = ["| threshold | decode calls | accuracy |", "|---:|---:|---:|"]
    for i in picked:
        row = group.row(i, named=True)
        calls = 100 * row["decode_call_fraction"]
        lines.append(f"| {row['threshold']:.4f} | {calls:.0f}% | {row['accuracy']:.4f} |")
    return lines


def sweep_markdown(sweep: pl.DataFrame, title: str, points: int = 11) -> str:
    """Readable operating points: the sweep rows nearest 0%, 10%, ..., 100% decode calls."""
    lines = [f"## {title}", ""]
    if "keep_ratio" not in sweep.columns:
        lines += _table(sweep, points)
    else:
        ordered = sweep.sort("keep_ratio", "threshold")
        for (ratio,), group in ordered.group_by("keep_ratio", maintain_order=True):
            lines += [f"### keep_ratio {ratio:g}", "", *_table(group, points), ""]
    return "\n".join(lines).rstrip("\n") + "\n"
