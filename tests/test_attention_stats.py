"""Tests for vlmflow.guided.attention_stats: distribution statistics, the run comparison, the parquet
importance file and the markdown table."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from vlmflow.core.errors import InputError
from vlmflow.guided.attention_stats import (
    compare_runs,
    comparison_markdown,
    entropy,
    jensen_shannon,
    normalise,
    read_importance,
    top_k_overlap,
    write_importance,
)


def _answers(qids: list[str], text: str = "yes") -> dict[str, str]:
    return {qid: text for qid in qids}


def test_normalise_sums_to_one_and_zero_is_uniform() -> None:
    np.testing.assert_allclose(normalise(np.array([1.0, 3.0])), [0.25, 0.75])
    np.testing.assert_allclose(normalise(np.zeros(4)), [0.25] * 4)


def test_entropy_jsd_and_overlap_basics() -> None:
    assert entropy(np.array([1.0, 0.0])) == 0.0
    assert entropy(np.full(4, 0.25)) == pytest.approx(math.log(4))
    assert jensen_shannon(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(math.log(2))
    # ties go to the lower index: top-2 of p is {0, 1}, of q is {0, 2}
    assert top_k_overlap(np.array([0.5, 0.5, 0.0]), np.array([0.4, 0.2, 0.4]), 2) == 1
    assert top_k_overlap(np.array([0.5, 0.5]), np.array([0.1, 0.9]), 16) == 2


def test_identical_runs() -> None:
    rng = np.random.default_rng(0)
    run = {f"q{i}": rng.random(64) for i in range(5)}
    qids = list(run)
    ans = _answers(qids)
    stats = compare_runs(run, dict(run), ans, ans, ans, ans)
    assert stats["n"] == 5
    assert stats["avg_l1"] == pytest.approx(0.0)
    assert stats["median_l1"] == pytest.approx(0.0)
    assert stats["avg_jsd"] == pytest.approx(0.0, abs=1e-12)
    assert stats["avg_top16_overlap"] == 16.0
    assert stats["top1_same_count"] == 5
    assert stats["avg_entropy_delta"] == pytest.approx(0.0)
    assert stats["changed_small_answer_count"] == 0
    assert stats["changed_large_answer_count"] == 0


def test_hand_computed_two_samples() -> None:
    a = {"q1": np.array([2.0, 0, 0, 0]), "q2": np.array([0, 0, 0, 1.0]), "only_a": np.ones(4)}
    b = {"q1": np.array([1.0, 1.0, 0, 0]), "q2": np.array([0, 0, 3.0, 3.0])}
    qids = ["q1", "q2"]
    ans = _answers(qids)
    stats = compare_runs(a, b, ans, ans, ans, ans, top_k=1)
    assert stats["n"] == 2
    assert stats["avg_l1"] == pytest.approx(1.0)
    # m = [.75, .25]: KL(p||m) = ln(4/3), KL(q||m) = .5 ln(4/3), JSD = .75 ln(4/3)
    assert stats["avg_jsd"] == pytest.approx(0.75 * math.log(4 / 3))
    assert stats["avg_entropy_delta"] == pytest.approx(math.log(2))
    # q1: argmax 0 in both; q2: argmax 3 in a, 2 in b (tie broken by the lower index)
    assert stats["top1_same_count"] == 1
    assert stats["avg_top1_overlap"] == 0.5
    assert "avg_top16_overlap" not in stats


def test_changed_answers_normalise_case_and_whitespace() -> None:
    run = {"q1": np.ones(4), "q2": np.ones(4), "q3": np.ones(4)}
    small_a = {"q1": "Red", "q2": "two  dogs", "q3": "yes"}
    small_b = {"q1": " red ", "q2": "Two dogs", "q3": "no"}
    large_a = {"q1": "A", "q2": "b", "q3": "c"}
    large_b = {"q1": "x", "q2": "y", "q3": "C"}
    stats = compare_runs(run, run, small_a, small_b, large_a, large_b)
    assert stats["changed_small_answer_count"] == 1
    assert stats["changed_large_answer_count"] == 2


def test_errors_name_the_problem() -> None:
    ans = _answers(["q7"])
    with pytest.raises(ValueError, match="q7"):
        compare_runs({"q7": np.ones(4)}, {"q7": np.ones(5)}, ans, ans, ans, ans)
    with pytest.raises(ValueError, match="no question ids in common"):
        compare_runs({"a": np.ones(4)}, {"b": np.ones(4)}, ans, ans, ans, ans)


def test_parquet_round_trip(tmp_path) -> None:
    path = tmp_path / "importance.parquet"
    rows = [
        {"question_id": "q1", "importance": [0.0, 2.5, 1.0]},
        {"question_id": "q2", "importance": [1, 2]},
    ]
    write_importance(path, rows)
    frame = pl.read_parquet(path)
    assert frame["n_visual"].to_list() == [3, 2]
    loaded = read_importance(path)
    assert list(loaded) == ["q1", "q2"]
    assert loaded["q1"].dtype == np.float64
    np.testing.assert_array_equal(loaded["q1"], [0.0, 2.5, 1.0])
    np.testing.assert_array_equal(loaded["q2"], [1.0, 2.0])


def test_missing_importance_column_is_an_input_error(tmp_path) -> None:
    path = tmp_path / "bad.parquet"
    pl.DataFrame({"question_id": ["q1"], "n_visual": [3]}).write_parquet(path)
    with pytest.raises(InputError, match="importance") as info:
        read_importance(path)
    assert info.value.path == str(path)


def test_markdown_formatting() -> None:
    stats = {
        "n": 50,
        "avg_l1": 0.1234567,
        "median_l1": 0.1,
        "avg_jsd": 0.01,
        "avg_top16_overlap": 13.48,
        "top1_same_count": 38,
        "avg_entropy_delta": -0.05,
        "changed_small_answer_count": 7,
        "changed_large_answer_count": 3,
    }
    text = comparison_markdown(stats, "CoT guide vs baseline", "baseline", "cot")
    assert text.startswith("## CoT guide vs baseline")
    assert "baseline" in text and "cot" in text
    assert "| statistic | value |" in text
    assert "| avg_top16_overlap | 13.48 / 16 |" in text
    assert "| top1_same_count | 38 / 50 |" in text
    assert "| changed_small_answer_count | 7 / 50 |" in text
    assert "| changed_large_answer_count | 3 / 50 |" in text
    assert "| avg_l1 | 0.123457 |" in text
    assert "| avg_entropy_delta | -0.050000 |" in text
    assert "| n | 50 |" in text
