"""Tests for vlmflow.probing.metrics: answer checking, delta consistency on planted and noise
directions, the cross-group permutation test and the accuracy tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vlmflow.data.swap_pairs import AXES, CATEGORIES
from vlmflow.probing.metrics import (
    CENTRING_PAIRS,
    CENTRING_QUADS,
    category_validity,
    centre,
    check_answer,
    cross_group_alignment,
    earliest_position,
    mean_pairwise_cosine,
    pred_stats,
    sign_corrected_consistency,
    within_category_consistency,
)

DIM = 64
PER_CATEGORY = 40


@pytest.mark.parametrize(
    ("text", "expected", "correct"),
    [
        ("It is below the cup", "under", True),
        ("Beneath it.", "under", True),
        ("The mug is near the plate", "close", True),
        ("Nearby.", "close", True),
        ("It is distant from the wall", "far", True),
        ("LEFT", "left", True),
        ("left, not right", "right", False),
        ("It is far away, not close", "close", False),
        ("It is far away, not close", "far", True),
        ("above rather than below", "under", False),
        ("I cannot tell", "left", False),
        ("It is farther away", "far", False),
        ("The leftmost cup", "left", False),
    ],
)
def test_check_answer(text: str, expected: str, correct: bool) -> None:
    assert check_answer(text, expected) is correct


def test_check_answer_rejects_unknown_word() -> None:
    with pytest.raises(ValueError, match="unknown answer word"):
        check_answer("left", "behind")


def test_earliest_position() -> None:
    assert earliest_position("Near, not far", ["far", "near"]) == 0
    assert earliest_position("it is far", ["far", "distant"]) == 6
    assert earliest_position("farther", ["far"]) == -1
    assert earliest_position("", ["far"]) == -1


def test_centre_and_pairwise_cosine_basics() -> None:
    x = np.array([[1.0, 2.0], [3.0, 6.0]])
    np.testing.assert_allclose(centre(x), [[-1.0, -2.0], [1.0, 2.0]])
    same = mean_pairwise_cosine(np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 0.0]]))
    # pairs: (0,1)=1, (0,2)=0 (zero row), (1,2)=0
    assert same["n"] == 3
    assert same["mean"] == pytest.approx(1 / 3)
    assert same["std"] == pytest.approx(np.std([1.0, 0.0, 0.0]))
    opposite = mean_pairwise_cosine(np.array([[1.0, 1.0], [-1.0, -1.0]]))
    assert opposite["mean"] == pytest.approx(-1.0)
    single = mean_pairwise_cosine(np.ones((1, 3)))
    assert math.isnan(single["mean"]) and math.isnan(single["std"]) and single["n"] == 1


def _planted(rng: np.random.Generator, noise: float = 0.02) -> tuple[np.ndarray, list[str]]:
    """+u_g for left/above/far, -u_g for right/under/close, plus small noise per coordinate."""
    rows, labels = [], []
    for first, second in AXES.values():
        u = rng.normal(size=DIM)
        u /= np.linalg.norm(u)
        for category, sign in ((first, 1.0), (second, -1.0)):
            rows.append(sign * u + noise * rng.normal(size=(PER_CATEGORY, DIM)))
            labels += [category] * PER_CATEGORY
    return np.concatenate(rows), labels


def test_within_category_consistency_planted_vs_noise() -> None:
    rng = np.random.default_rng(0)
    deltas, labels = _planted(rng)
    planted = within_category_consistency(deltas, labels)
    assert list(planted) == list(CATEGORIES)
    for category, stats in planted.items():
        assert stats["n"] == PER_CATEGORY
        assert stats["mean"] > 0.9, category
    noise = within_category_consistency(rng.normal(size=deltas.shape), labels)
    for category, stats in noise.items():
        assert abs(stats["mean"]) < 0.1, category


def test_centring_uses_all_rows_not_each_category() -> None:
    """Per-category centring would erase the planted direction; centring over all rows keeps it.
    A common offset shared by every row is what centring is for."""
    rng = np.random.default_rng(1)
    deltas, labels = _planted(rng)
    offset = 5.0 * rng.normal(size=DIM)
    shifted = deltas + offset
    centred = within_category_consistency(shifted, labels)
    assert all(s["mean"] > 0.9 for s in centred.values())
    raw = sign_corrected_consistency(shifted, labels, centre_first=False)
    assert all(s["mean"] < 0.5 for s in raw.values())  # the flip fights the offset
    centred_groups = sign_corrected_consistency(shifted, labels)
    assert all(s["mean"] > 0.9 for s in centred_groups.values())


def test_sign_corrected_consistency_planted_vs_noise() -> None:
    rng = np.random.default_rng(2)
    deltas, labels = _planted(rng)
    planted = sign_corrected_consistency(deltas, labels)
    assert list(planted) == list(AXES)
    for group, stats in planted.items():
        assert stats["n"] == 2 * PER_CATEGORY
        assert stats["mean"] > 0.9, group
    noise = sign_corrected_consistency(rng.normal(size=deltas.shape), labels)
    for group, stats in noise.items():
        assert abs(stats["mean"]) < 0.1, group


def test_sign_corrected_consistency_only_present_groups() -> None:
    rng = np.random.default_rng(3)
    deltas = rng.normal(size=(4, DIM))
    result = sign_corrected_consistency(deltas, ["far", "close", "far", "close"])
    assert list(result) == ["distance"]
    with pytest.raises(ValueError, match="unknown categories"):
        within_category_consistency(deltas, ["far", "close", "far", "behind"])
    with pytest.raises(ValueError, match="deltas but"):
        within_category_consistency(deltas, ["far"])


def test_flipping_uses_the_second_word() -> None:
    """Only 'right' rows point the other way: unflipped the group cancels, flipped it agrees."""
    u = np.zeros(DIM)
    u[0] = 1.0
    deltas = np.stack([u, u, -u, -u])
    labels = ["left", "left", "right", "right"]
    assert sign_corrected_consistency(deltas, labels, centre_first=False)["horizontal"]["mean"] == pytest.approx(1.0)
    assert within_category_consistency(deltas, labels, centre_first=False)["right"]["mean"] == pytest.approx(1.0)


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(size=(n, DIM))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_cross_group_alignment_planted_shared_direction() -> None:
    rng = np.random.default_rng(4)
    n = 50
    v = _unit(rng, 1)[0]
    per_quad = _unit(rng, n)
    vertical = v + per_quad + 0.1 * rng.normal(size=(n, DIM))
    distance = v + per_quad + 0.1 * rng.normal(size=(n, DIM))
    result = cross_group_alignment(vertical, distance, n_permutations=200, seed=0)
    assert result["n"] == n
    assert result["per_sample_mean"] > 0.5
    assert result["mean_delta_alignment"] > 0.9
    assert result["p_value"] <= 0.05
    assert result["p_value"] == pytest.approx(1 / 201)
    assert abs(result["null_mean"]) < 0.1


def test_cross_group_alignment_independent_noise() -> None:
    rng = np.random.default_rng(5)
    vertical, distance = rng.normal(size=(2, 50, DIM))
    result = cross_group_alignment(vertical, distance, n_permutations=200, seed=0)
    assert abs(result["per_sample_mean"]) < 0.1
    assert result["p_value"] > 0.05
    again = cross_group_alignment(vertical, distance, n_permutations=200, seed=0)
    assert again == result


def test_cross_group_alignment_permutes_whole_rows() -> None:
    """Each quad shares its own direction; the two matrices' global offsets are orthogonal.
    Only the pairing carries the signal: the per-quad cosine is high, re-pairing rows destroys it,
    and the mean deltas do not align."""
    rng = np.random.default_rng(6)
    n = 50
    per_quad = _unit(rng, n)
    offset_v = np.zeros(DIM)
    offset_v[0] = 3.0
    offset_d = np.zeros(DIM)
    offset_d[1] = 3.0
    vertical = offset_v + per_quad + 0.05 * rng.normal(size=(n, DIM))
    distance = offset_d + per_quad + 0.05 * rng.normal(size=(n, DIM))
    result = cross_group_alignment(vertical, distance, n_permutations=200, seed=1)
    assert result["per_sample_mean"] > 0.8
    assert abs(result["null_mean"]) < 0.1
    assert result["p_value"] <= 0.05
    assert abs(result["mean_delta_alignment"]) < 0.1
    # Without centring the orthogonal offsets dominate each delta and hide the pairing.
    raw = cross_group_alignment(vertical, distance, n_permutations=20, seed=1, centre_first=False)
    assert raw["per_sample_mean"] < 0.2


def test_cross_group_alignment_null_keeps_global_direction() -> None:
    """Re-pairing whole rows keeps a direction every row shares (permuting coordinates would not):
    uncentred, a global shared direction with no per-quad pairing is aligned but not significant."""
    rng = np.random.default_rng(7)
    n = 50
    v = _unit(rng, 1)[0]
    vertical = v + 0.1 * rng.normal(size=(n, DIM))
    distance = v + 0.1 * rng.normal(size=(n, DIM))
    result = cross_group_alignment(vertical, distance, n_permutations=200, seed=2, centre_first=False)
    assert result["per_sample_mean"] > 0.5
    assert result["null_mean"] == pytest.approx(result["per_sample_mean"], abs=0.05)
    assert result["p_value"] > 0.05


def test_cross_group_alignment_small_and_mismatched() -> None:
    result = cross_group_alignment(np.ones((1, DIM)), np.ones((1, DIM)))
    assert result["n"] == 1
    for key in ("per_sample_mean", "per_sample_std", "mean_delta_alignment", "null_mean",
                "null_std", "p_value"):  # fmt: skip
        assert math.isnan(result[key]), key
    with pytest.raises(ValueError, match="shape mismatch"):
        cross_group_alignment(np.ones((3, DIM)), np.ones((2, DIM)))


def test_pred_stats() -> None:
    groups = ["horizontal", "horizontal", "vertical", "distance", "distance", "distance"]
    orig = [True, True, False, True, False, True]
    swap = [True, False, False, True, True, False]
    stats = pred_stats(groups, orig, swap)
    assert list(stats) == ["horizontal", "vertical", "distance", "all"]
    assert stats["horizontal"] == {
        "n": 2, "orig_accuracy": 1.0, "swap_accuracy": 0.5, "both_accuracy": 0.5,
    }  # fmt: skip
    assert stats["vertical"] == {
        "n": 1, "orig_accuracy": 0.0, "swap_accuracy": 0.0, "both_accuracy": 0.0,
    }  # fmt: skip
    assert stats["distance"]["n"] == 3
    assert stats["distance"]["orig_accuracy"] == pytest.approx(2 / 3)
    assert stats["distance"]["swap_accuracy"] == pytest.approx(2 / 3)
    assert stats["distance"]["both_accuracy"] == pytest.approx(1 / 3)
    assert stats["all"]["n"] == 6
    assert stats["all"]["orig_accuracy"] == pytest.approx(4 / 6)
    assert stats["all"]["swap_accuracy"] == pytest.approx(3 / 6)
    assert stats["all"]["both_accuracy"] == pytest.approx(2 / 6)
    with pytest.raises(ValueError, match="differ in length"):
        pred_stats(groups, orig, swap[:-1])


def test_category_validity() -> None:
    categories = ["far", "far", "close", "close", "left"]
    orig = [True, True, True, False, True]
    swap = [True, False, False, False, True]
    validity = category_validity(categories, orig, swap)
    assert list(validity) == ["left", "far", "close"]
    assert validity["far"] == {"n": 2, "accuracy": 0.75, "reliable": True}
    assert validity["close"] == {"n": 2, "accuracy": 0.25, "reliable": False}
    assert validity["left"] == {"n": 1, "accuracy": 1.0, "reliable": True}
    strict = category_validity(categories, orig, swap, threshold=0.8)
    assert strict["far"]["reliable"] is False
    boundary = category_validity(["under", "under"], [True, True], [True, False], threshold=0.75)
    assert boundary["under"]["reliable"] is True


# Hand-computed centring. Six 2-d pair deltas; their mean over all six rows (the analysis set) is
#   x: (4 + 2 + 0 - 2 + 3 + 5) / 6 = 2,  y: (2 + 4 - 2 + 0 + 3 + 5) / 6 = 2  ->  [2, 2].
HAND_DELTAS = np.array([[4.0, 2.0], [2.0, 4.0], [0.0, -2.0], [-2.0, 0.0], [3.0, 3.0], [5.0, 5.0]])
HAND_LABELS = ["left", "left", "right", "right", "far", "far"]
# Centred by [2, 2]:  left [2, 0], [0, 2];  right [-2, -4], [-4, -2];  far [1, 1], [3, 3].
HAND_CENTRED = np.array([[2.0, 0.0], [0.0, 2.0], [-2.0, -4.0], [-4.0, -2.0], [1.0, 1.0], [3.0, 3.0]])
# Within category:  left  cos([2,0],[0,2]) = 0
#                   right cos([-2,-4],[-4,-2]) = (8 + 8) / (sqrt(20) sqrt(20)) = 0.8
#                   far   cos([1,1],[3,3]) = 1
HAND_WITHIN = {"left": 0.0, "right": 0.8, "far": 1.0}
# Sign-corrected horizontal: flip right -> [2, 4], [4, 2]; the six cosines are
#   l1.l2 = 0, l1.r1 = 4/(2 sqrt20) = 1/sqrt5, l1.r2 = 8/(2 sqrt20) = 2/sqrt5,
#   l2.r1 = 2/sqrt5, l2.r2 = 1/sqrt5, r1.r2 = 0.8   ->  mean = (6/sqrt5 + 0.8) / 6 = 0.580547
HAND_HORIZONTAL = (6 / math.sqrt(5) + 0.8) / 6


def test_hand_computed_centring_over_the_analysis_set() -> None:
    np.testing.assert_allclose(centre(HAND_DELTAS), HAND_CENTRED)
    within = within_category_consistency(HAND_DELTAS, HAND_LABELS)
    for category, value in HAND_WITHIN.items():
        assert within[category]["mean"] == pytest.approx(value, abs=1e-12), category
        assert within[category]["n"] == 2
        assert within[category]["centred_over"] == 6
        assert within[category]["centring"] == CENTRING_PAIRS
    signed = sign_corrected_consistency(HAND_DELTAS, HAND_LABELS)
    assert signed["horizontal"]["mean"] == pytest.approx(HAND_HORIZONTAL, abs=1e-12)
    assert signed["horizontal"]["n"] == 4 and signed["horizontal"]["centred_over"] == 6
    assert signed["distance"]["mean"] == pytest.approx(1.0)  # far only: nothing flipped


def test_a_kept_subset_is_scored_on_the_analysis_set_centring() -> None:
    """Dropping the far pairs (say the model got them wrong) leaves left and right unchanged: the
    mean is still [2, 2], over all six rows. Centring over the four kept rows instead would use
    [(4+2+0-2)/4, (2+4-2+0)/4] = [1, 1]: left [3, 1], [1, 3], cosine 6/10 = 0.6, not 0."""
    keep = np.array([True, True, True, True, False, False])
    within = within_category_consistency(HAND_DELTAS, HAND_LABELS, keep=keep)
    assert set(within) == {"left", "right"}
    assert within["left"]["mean"] == pytest.approx(0.0, abs=1e-12)
    assert within["right"]["mean"] == pytest.approx(0.8)
    assert within["left"]["centred_over"] == 6 and within["left"]["n"] == 2
    signed = sign_corrected_consistency(HAND_DELTAS, HAND_LABELS, keep=keep)
    assert set(signed) == {"horizontal"}
    assert signed["horizontal"]["mean"] == pytest.approx(HAND_HORIZONTAL)
    # The old behaviour, the subset treated as its own analysis set, gives a different left score.
    own = within_category_consistency(HAND_DELTAS[keep], [c for c, k in zip(HAND_LABELS, keep) if k])
    assert own["left"]["mean"] == pytest.approx(0.6) and own["left"]["centred_over"] == 4
    # Whatever else is dropped, a category's score only follows its own kept rows.
    only_left = within_category_consistency(HAND_DELTAS, HAND_LABELS, keep=[True, True, False, False, False, False])
    assert only_left["left"]["mean"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="keep has shape"):
        within_category_consistency(HAND_DELTAS, HAND_LABELS, keep=[True])


def test_no_centring_is_recorded_as_none() -> None:
    within = within_category_consistency(HAND_DELTAS, HAND_LABELS, centre_first=False)
    # raw left [4,2], [2,4]: 16 / 20 = 0.8
    assert within["left"]["mean"] == pytest.approx(0.8)
    assert within["left"]["centring"] == "none" and within["left"]["centred_over"] == 0


def test_hand_computed_cross_group_alignment_centring() -> None:
    """Three quads. vertical [3,1], [1,3], [2,5] has mean [2,3] -> centred [1,-2], [-1,0], [0,2];
    distance [2,0], [0,2], [4,1] has mean [2,1] -> centred [0,-1], [-2,1], [2,0].
    Per-quad cosines: 2/sqrt5, 2/sqrt5, 0 -> mean 4/(3 sqrt5) = 0.596285.
    Uncentred mean deltas: cos([2,3],[2,1]) = 7/sqrt65."""
    vertical = np.array([[3.0, 1.0], [1.0, 3.0], [2.0, 5.0]])
    distance = np.array([[2.0, 0.0], [0.0, 2.0], [4.0, 1.0]])
    result = cross_group_alignment(vertical, distance, n_permutations=10, seed=0)
    assert result["per_sample_mean"] == pytest.approx(4 / (3 * math.sqrt(5)))
    assert result["per_sample_std"] == pytest.approx(np.std([2 / math.sqrt(5), 2 / math.sqrt(5), 0.0]))
    assert result["mean_delta_alignment"] == pytest.approx(7 / math.sqrt(65))
    assert result["n"] == 3 and result["centred_over"] == 3 and result["centring"] == CENTRING_QUADS
    # Keep the first two quads: the same centred rows, cosines 2/sqrt5 each. (Centring the two
    # alone, by [2,2] and [1,1], would give [1,-1], [-1,1] for both matrices and cosine 1.)
    # The mean deltas of the kept rows, uncentred: cos([2,2],[1,1]) = 1.
    kept = cross_group_alignment(vertical, distance, n_permutations=10, seed=0, keep=[True, True, False])
    assert kept["per_sample_mean"] == pytest.approx(2 / math.sqrt(5))
    assert kept["mean_delta_alignment"] == pytest.approx(1.0)
    assert kept["n"] == 2 and kept["centred_over"] == 3
    alone = cross_group_alignment(vertical[:2], distance[:2], n_permutations=10, seed=0)
    assert alone["per_sample_mean"] == pytest.approx(1.0) and alone["centred_over"] == 2
    few = cross_group_alignment(vertical, distance, keep=[True, False, False])
    assert few["n"] == 1 and math.isnan(few["per_sample_mean"]) and few["centred_over"] == 3
