"""One scale's swap analysis: planted deltas read as consistent, the both-correct subset, the files."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from vlmflow.probing.analysis import analyse_scale, consistency_frame, write_scale
from vlmflow.probing.metrics import CENTRING_PAIRS, CENTRING_QUADS

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
        "layers": np.array([0, 3]),
        "category": np.array(categories),
        "group": np.array(groups),
        "pair_id": np.array([str(i) for i in range(n)]),
        "correct_orig": correct,
        "correct_swap": np.ones(n, dtype=bool),
        "delta_L0": np.array(noise, dtype=np.float16),
        "delta_L3": np.array(planted, dtype=np.float16),
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


def quads(aligned: bool, n: int = 30, dim: int = 16, seed: int = 1) -> dict[str, np.ndarray]:
    """Per quad a scene direction; the distance delta follows it (aligned) or is independent noise."""
    rng = np.random.default_rng(seed)
    scene = rng.normal(size=(n, dim))
    vertical = scene + 0.3 * rng.normal(size=(n, dim))
    distance = (scene if aligned else rng.normal(size=(n, dim))) + 0.3 * rng.normal(size=(n, dim))
    correct = np.arange(n) % 2 == 0
    return {
        "layers": np.array([0, 3]), "pair_id": np.array([str(i) for i in range(n)]),
        "category_vertical": np.array(["above"] * n), "category_distance": np.array(["far"] * n),
        "correct_vertical": correct, "correct_distance": np.ones(n, dtype=bool),
        "delta_vert_L0": rng.normal(size=(n, dim)), "delta_dist_L0": rng.normal(size=(n, dim)),
        "delta_vert_L3": vertical, "delta_dist_L3": distance,
    }  # fmt: skip


def test_cross_alignment_of_planted_quads_is_significant_and_of_noise_is_not():
    aligned = analyse_scale(planted_arrays(), quads(aligned=True), permutations=200)["cross_alignment_all"]
    assert aligned["L3"]["per_sample_mean"] > 0.8 and aligned["L3"]["p_value"] < 0.01
    assert aligned["L0"]["p_value"] > 0.05
    unrelated = analyse_scale(planted_arrays(), quads(aligned=False), permutations=200)["cross_alignment_all"]
    assert abs(unrelated["L3"]["per_sample_mean"]) < 0.2 and unrelated["L3"]["p_value"] > 0.05
    subset = analyse_scale(planted_arrays(), quads(aligned=True), permutations=10)["cross_alignment_both_correct"]
    assert subset["L3"]["n"] == 15


def test_scales_merge_into_one_table_and_the_plots(tmp_path):
    from vlmflow.probing.analysis import merge_scales
    from vlmflow.probing.plots import (
        plot_ablation,
        plot_accuracy,
        plot_alignment,
        plot_consistency,
        plot_pca,
    )

    scales = {"vanilla": "base", "step-500": "sft/step-500"}
    for i, scale in enumerate(scales):
        arrays = planted_arrays(seed=i)
        write_scale(analyse_scale(arrays, quads(aligned=bool(i)), permutations=20), scale, tmp_path)
    summary = merge_scales(tmp_path, scales)
    assert summary["scale"].unique(maintain_order=True).to_list() == list(scales)
    assert summary.filter(pl.col("scale") == "step-500")["model"].unique().to_list() == ["sft/step-500"]
    both = summary.filter(pl.col("metric") == "both_accuracy", pl.col("unit") == "all")
    assert both["value"].to_list() == pytest.approx([2 / 3, 2 / 3])
    alignment = summary.filter(pl.col("metric") == "cross_alignment", pl.col("tag") == "all", pl.col("layer") == 3)
    assert alignment["value"][1] > 0.8 > abs(alignment["value"][0])
    assert set(summary["metric"]) >= {"sign_corrected_consistency", "within_cat_consistency", "category_accuracy",
                                      "cross_alignment_p", "mean_delta_alignment"}  # fmt: skip
    order = list(scales)
    figures = {
        name: tmp_path / f"{name}.png"
        for name in ("pca", "pca3d", "signed", "within", "align", "bars", "trajectory", "ablation")
    }
    plot_pca(planted_arrays(), "pca", figures["pca"], 2)
    plot_pca(planted_arrays(), "pca", figures["pca3d"], 3)
    plot_consistency(summary, order, "sign_corrected_consistency", figures["signed"])
    plot_consistency(summary, order, "within_cat_consistency", figures["within"])
    plot_alignment(summary, order, figures["align"])
    plot_accuracy(summary, order, figures["bars"], figures["trajectory"])
    plot_ablation(summary, order, 3, figures["ablation"])
    for name, path in figures.items():
        assert path.read_bytes().startswith(b"\x89PNG"), name


def test_the_pca_of_planted_deltas_separates_opposite_categories():
    from vlmflow.probing.plots import principal_components

    arrays = planted_arrays()
    points, share = principal_components(arrays["delta_L3"].astype(np.float64), 2)
    categories = arrays["category"]
    assert share.sum() > 0.9
    for first, second in (("left", "right"), ("above", "under")):
        a, b = points[categories == first], points[categories == second]
        gap = np.linalg.norm(a.mean(axis=0) - b.mean(axis=0))
        assert gap > 5 * max(a.std(axis=0).max(), b.std(axis=0).max())


# Hand-computed: six 2-d pair deltas at one layer, mean over all six = [2, 2]; centred
#   left [2, 0], [0, 2] -> 0;  right [-2, -4], [-4, -2] -> 0.8;  far [1, 1], [3, 3] -> 1;
#   horizontal, right flipped: (6/sqrt5 + 0.8) / 6 = 0.580547  (see tests/test_swap_metrics.py).
HAND_HORIZONTAL = (6 / np.sqrt(5) + 0.8) / 6


def hand_arrays(correct_swap: list[bool]) -> dict[str, np.ndarray]:
    return {
        "layers": np.array([0]),
        "category": np.array(["left", "left", "right", "right", "far", "far"]),
        "group": np.array(["horizontal"] * 4 + ["distance"] * 2),
        "pair_id": np.array([str(i) for i in range(6)]),
        "correct_orig": np.ones(6, dtype=bool),
        "correct_swap": np.array(correct_swap),
        "delta_L0": np.array([[4.0, 2.0], [2.0, 4.0], [0.0, -2.0], [-2.0, 0.0], [3.0, 3.0], [5.0, 5.0]]),
    }


def hand_quads(correct_vertical: list[bool]) -> dict[str, np.ndarray]:
    """vertical mean [2, 3], distance mean [2, 1]; centred per-quad cosines 2/sqrt5, 2/sqrt5, 0."""
    return {
        "layers": np.array([0]),
        "pair_id": np.array(["0", "1", "2"]),
        "category_vertical": np.array(["above"] * 3),
        "category_distance": np.array(["far"] * 3),
        "correct_vertical": np.array(correct_vertical),
        "correct_distance": np.ones(3, dtype=bool),
        "delta_vert_L0": np.array([[3.0, 1.0], [1.0, 3.0], [2.0, 5.0]]),
        "delta_dist_L0": np.array([[2.0, 0.0], [0.0, 2.0], [4.0, 1.0]]),
    }


def test_both_correct_is_centred_over_all_pairs():
    """With every pair right, both_correct equals all. With the far pairs wrong, left and right keep
    their scores: the mean is still [2, 2] over all six pairs. (Centring the four kept pairs on
    their own mean [1, 1] made left [3, 1], [1, 3], cosine 0.6: the old behaviour.)"""
    every = analyse_scale(hand_arrays([True] * 6), permutations=10)
    far_wrong = analyse_scale(hand_arrays([True, True, True, True, False, False]), permutations=10)
    right_wrong = analyse_scale(hand_arrays([True, True, True, False, True, True]), permutations=10)
    for result in (every, far_wrong, right_wrong):
        within = result["within_cat_consistency_both_correct"]
        assert within["left_L0"]["mean"] == pytest.approx(0.0, abs=1e-12)
        assert within["left_L0"]["n"] == 2 and within["left_L0"]["centred_over"] == 6
    assert every["within_cat_consistency_both_correct"] == every["within_cat_consistency_all"]
    for result in (every, far_wrong):
        within = result["within_cat_consistency_both_correct"]
        assert within["right_L0"]["mean"] == pytest.approx(0.8)
        signed = result["sign_corrected_consistency_both_correct"]["horizontal_L0"]
        assert signed["mean"] == pytest.approx(HAND_HORIZONTAL) and signed["centred_over"] == 6
    assert "far_L0" not in far_wrong["within_cat_consistency_both_correct"]
    assert far_wrong["within_cat_consistency_all"] == every["within_cat_consistency_all"]
    # The far pairs' own score does not move when a right pair turns wrong.
    assert right_wrong["within_cat_consistency_both_correct"]["far_L0"]["mean"] == pytest.approx(1.0)
    assert right_wrong["within_cat_consistency_both_correct"]["right_L0"] == {
        "mean": None, "std": None, "n": 1, "centring": CENTRING_PAIRS, "centred_over": 6,
    }  # fmt: skip


def test_both_correct_quads_are_centred_over_all_quads():
    result = analyse_scale(hand_arrays([True] * 6), hand_quads([True, True, False]), permutations=10)
    every, kept = result["cross_alignment_all"]["L0"], result["cross_alignment_both_correct"]["L0"]
    assert every["per_sample_mean"] == pytest.approx(4 / (3 * np.sqrt(5)))
    assert kept["per_sample_mean"] == pytest.approx(2 / np.sqrt(5))  # not 1, as centring the two alone gave
    assert (every["n"], every["centred_over"], kept["n"], kept["centred_over"]) == (3, 3, 2, 3)


def test_every_consistency_and_alignment_json_records_the_centring(tmp_path):
    result = analyse_scale(
        hand_arrays([True, True, True, True, False, False]), hand_quads([True, True, False]), permutations=10
    )
    write_scale(result, "s", tmp_path)
    for tag in ("all", "both_correct"):
        for kind in ("within_cat_consistency", "sign_corrected_consistency"):
            blocks = json.loads((tmp_path / "json" / f"{kind}_s_{tag}.json").read_text())
            assert blocks, (kind, tag)
            for key, block in blocks.items():
                assert block["centring"] == CENTRING_PAIRS and block["centred_over"] == 6, (kind, tag, key)
        blocks = json.loads((tmp_path / "json" / f"cross_alignment_s_{tag}.json").read_text())
        assert set(blocks) == {"L0"}
        assert blocks["L0"]["centring"] == CENTRING_QUADS and blocks["L0"]["centred_over"] == 3
    consistency = pl.read_csv(tmp_path / "csv" / "consistency_s.csv")
    assert set(consistency["centred_over"]) == {6} and set(consistency["centring"]) == {CENTRING_PAIRS}
    alignment = pl.read_csv(tmp_path / "csv" / "cross_alignment_s.csv")
    assert alignment["centred_over"].to_list() == [3, 3] and alignment["n"].to_list() == [3, 2]
