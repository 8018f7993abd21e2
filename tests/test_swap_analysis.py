"""One scale's swap analysis: planted deltas read as consistent, the both-correct subset, the files."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from vlmflow.probing.analysis import analyse_scale, consistency_frame, write_scale

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
