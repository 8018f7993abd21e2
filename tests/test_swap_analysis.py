"""One scale's swap analysis: planted deltas read as consistent, the both-correct subset, the files."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from vlmflow.swap_analysis import analyse_scale, consistency_frame, write_scale

CATEGORIES = ["left", "right", "above", "under"]


def planted_arrays(n_per_category: int = 12, dim: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """Layer 3 carries one direction per group (opposite for the opposite category); layer 0 is noise."""
    rng = np.random.default_rng(seed)
    axis = {"horizontal": rng.normal(size=dim), "vertical": rng.normal(size=dim)}
    categories, groups, planted, noise = [], [], [], []
    for category in CATEGORIES:
        group = "horizontal" if category in ("left", "right") else "vertical"
        sign = 1.0 if category in ("left", "above") else -1.0
        for _ in range(n_per_category):
            categories.append(category)
            groups.append(group)
            planted.append(sign * axis[group] / np.linalg.norm(axis[group]) + 0.02 * rng.normal(size=dim))
            noise.append(rng.normal(size=dim))
    n = len(categories)
    correct = np.arange(n) % 3 != 0  # a third of the pairs wrong on the original question
    return {
        "layers": np.array([0, 3]), "category": np.array(categories), "group": np.array(groups),
        "pair_id": np.array([str(i) for i in range(n)]), "correct_orig": correct, "correct_swap": np.ones(n, dtype=bool),
        "delta_L0": np.array(noise, dtype=np.float16), "delta_L3": np.array(planted, dtype=np.float16),
    }


def test_planted_layer_is_consistent_and_noise_is_not():
    result = analyse_scale(planted_arrays())
    within = result["within_cat_consistency_all"]
    assert all(within[f"{c}_L3"]["mean"] > 0.9 for c in CATEGORIES)
    assert all(abs(within[f"{c}_L0"]["mean"]) < 0.2 for c in CATEGORIES)
    signed = result["sign_corrected_consistency_all"]
    assert signed["horizontal_L3"]["mean"] > 0.9 and abs(signed["vertical_L0"]["mean"]) < 0.2
    both = result["within_cat_consistency_both_correct"]
    assert both["left_L3"]["n"] == sum(1 for i in range(12) if i % 3 != 0)
    assert result["pred_stats"]["all"]["orig_accuracy"] == pytest.approx(2 / 3)


def test_files_in_the_seed_layout(tmp_path):
    result = analyse_scale(planted_arrays())
    write_scale(result, "step-500", tmp_path)
    names = sorted(p.name for p in (tmp_path / "json").iterdir())
    assert "pred_stats_step-500.json" in names and "within_cat_consistency_step-500_both_correct.json" in names
    validity = json.loads((tmp_path / "json" / "category_validity_step-500.json").read_text())
    assert set(validity) == set(CATEGORIES) and isinstance(validity["left"]["reliable"], bool)
    frame = pl.read_csv(tmp_path / "csv" / "consistency_step-500.csv")
    assert frame.height == consistency_frame(result, "step-500").height == 2 * (4 + 2) * 2  # tags x units x layers


def test_too_few_correct_pairs_leave_the_subset_empty():
    arrays = planted_arrays()
    arrays["correct_swap"] = np.zeros_like(arrays["correct_swap"])
    result = analyse_scale(arrays)
    assert result["within_cat_consistency_both_correct"] == {} and result["within_cat_consistency_all"]
