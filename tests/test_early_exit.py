"""Tests for vlmflow.guided.early_exit: scores, the threshold sweep (plain and per keep_ratio) and the
markdown table of operating points; and its figure (vlmflow.guided.report.plot_sweep)."""

from __future__ import annotations

import polars as pl
import pytest

from vlmflow.guided.early_exit import (
    exit_score,
    sweep_markdown,
    threshold_sweep,
)
from vlmflow.guided.report import plot_sweep

# The guide is right exactly on the two highest-scored questions; the decode model on all but one.
FRAME = pl.DataFrame(
    {
        "score": [0.9, 0.7, 0.4, 0.2],
        "guide_correct": [1.0, 1.0, 0.0, 0.0],
        "decode_correct": [1.0, 0.0, 1.0, 1.0],
    }
)


def test_exit_score_is_the_mean() -> None:
    assert exit_score(0.8, 0.4) == pytest.approx(0.6)


def test_sweep_covers_every_operating_point() -> None:
    sweep = threshold_sweep(FRAME)
    assert sweep.columns == ["threshold", "decode_call_fraction", "accuracy", "exited"]
    assert sweep["threshold"].is_sorted()
    by_fraction = {row["decode_call_fraction"]: row for row in sweep.iter_rows(named=True)}
    assert by_fraction[0.0]["accuracy"] == pytest.approx(0.5)  # all exit: mean guide_correct
    assert by_fraction[0.0]["exited"] == 4
    assert by_fraction[1.0]["accuracy"] == pytest.approx(0.75)  # none exit: mean decode_correct
    assert by_fraction[1.0]["exited"] == 0
    assert by_fraction[0.25]["accuracy"] == pytest.approx(0.75)  # score >= 0.4 exits
    assert by_fraction[0.5]["accuracy"] == pytest.approx(1.0)  # score >= 0.7 exits: the best
    assert by_fraction[0.75]["accuracy"] == pytest.approx(0.75)  # only score 0.9 exits
    assert sorted(by_fraction) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_explicit_thresholds() -> None:
    sweep = threshold_sweep(FRAME, thresholds=[0.5, 0.0])
    assert sweep["threshold"].to_list() == [0.0, 0.5]
    assert sweep["exited"].to_list() == [4, 2]
    assert sweep["accuracy"].to_list() == pytest.approx([0.5, 1.0])


def test_keep_ratio_groups_are_swept_separately() -> None:
    other = pl.DataFrame({"score": [0.5, 0.5], "guide_correct": [0.0, 0.0], "decode_correct": [1.0, 1.0]})
    frame = pl.concat(
        [
            other.with_columns(keep_ratio=pl.lit(0.5)),
            FRAME.with_columns(keep_ratio=pl.lit(0.25)),
        ]
    )
    sweep = threshold_sweep(frame)
    assert sweep.columns[0] == "keep_ratio"
    assert sweep["keep_ratio"].unique(maintain_order=True).to_list() == [0.25, 0.5]
    quarter = sweep.filter(pl.col("keep_ratio") == 0.25).drop("keep_ratio")
    assert quarter.equals(threshold_sweep(FRAME))
    half = sweep.filter(pl.col("keep_ratio") == 0.5)
    assert half["threshold"].to_list()[0] == 0.0
    assert half["threshold"].to_list()[1] == 0.5
    assert half["decode_call_fraction"].to_list() == [0.0, 0.0, 1.0]
    assert half["accuracy"].to_list() == [0.0, 0.0, 1.0]


def test_plot_writes_png(tmp_path) -> None:
    plain = tmp_path / "plain.png"
    plot_sweep(threshold_sweep(FRAME), plain, "early exit")
    grouped = tmp_path / "grouped.png"
    frame = pl.concat([FRAME.with_columns(keep_ratio=pl.lit(r)) for r in (0.25, 0.5)])
    plot_sweep(threshold_sweep(frame), grouped, "early exit by keep ratio")
    for path in (plain, grouped):
        assert path.read_bytes().startswith(b"\x89PNG")
        assert path.stat().st_size > 1000


def _table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ") and "threshold" not in line]


def test_markdown_rows_at_most_one_per_target() -> None:
    sweep = threshold_sweep(FRAME)
    text = sweep_markdown(sweep, "early exit")
    assert text.startswith("## early exit")
    rows = _table_rows(text)
    # 5 operating points (0, 25, 50, 75, 100 %) and 11 targets: each point at most once
    assert len(rows) == len(set(rows)) == 5
    assert rows[0].startswith("| 0.0000 | 0% | 0.5000 |")
    assert rows[-1] == f"| {sweep['threshold'].max():.4f} | 100% | 0.7500 |"
    assert len(_table_rows(sweep_markdown(sweep, "coarse", points=3))) == 3  # 0 %, 50 %, 100 %


def test_markdown_per_keep_ratio() -> None:
    frame = pl.concat([FRAME.with_columns(keep_ratio=pl.lit(r)) for r in (0.25, 0.5)])
    text = sweep_markdown(threshold_sweep(frame), "by ratio")
    assert "### keep_ratio 0.25" in text and "### keep_ratio 0.5" in text
    assert len(_table_rows(text)) == 10
