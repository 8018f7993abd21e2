"""Does swapping subject and reference move the hidden state the same way every time?

Seed "Why Far Looks Up": a swap pair is one image with two questions that differ only in word
order ("Is A left of B?" / "Is B left of A?"). For each pair and layer, delta = h_swap - h_orig
(last prompt token). If a layer encodes the relation as a direction, deltas of one category point
the same way (within-category consistency), the two opposite categories of a group point opposite
ways (sign-corrected consistency), and, if "far" is read like "above", the vertical and distance
deltas of the same scene line up (cross-group alignment, tested by re-pairing whole quads).
Hidden states are anisotropic, so deltas are mean-centred first.

Centring is per analysis set. A metric is given the whole analysis set of one layer (every pair of a
scale, or every quad) and, optionally, `keep`, the rows to score (e.g. the both-correct pairs). The
mean is taken over every row of the analysis set, kept or not, and that one mean is subtracted
before any subset is scored: a subset's deltas are a subset of the same centred deltas, so a
category's score never depends on which other rows were kept (which other categories the model got
right). The pair deltas of all categories share one mean; the quads' vertical and distance deltas
have one mean each. Every block a metric returns says so (`centring`, `centred_over`).

The answer checks and accuracy tables say which pairs and categories the model gets right, i.e.
which deltas are worth reading.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from vlmflow.data.swap_pairs import AXES, CATEGORIES, GROUP_OF, OPPOSITE

SYNONYMS: dict[str, tuple[str, ...]] = {
    "under": ("below", "beneath"),
    "close": ("near", "nearby"),
    "far": ("distant",),
}


def earliest_position(text: str, words: Sequence[str]) -> int:
    """Earliest start index in lowercased `text` of any of `words` as a whole word; -1 if none."""
    lowered = text.lower()
    starts = [m.start() for word in words if (m := re.search(rf"\b{re.escape(word.lower())}\b", lowered)) is not None]
    return min(starts, default=-1)


def check_answer(text: str, expected: str) -> bool:
    """True iff `expected` (or a synonym) occurs and its opposite does not occur before it."""
    if expected not in OPPOSITE:
        raise ValueError(f"unknown answer word {expected!r}; expected one of {CATEGORIES}")
    opposite = OPPOSITE[expected]
    hit = earliest_position(text, (expected, *SYNONYMS.get(expected, ())))
    miss = earliest_position(text, (opposite, *SYNONYMS.get(opposite, ())))
    return hit >= 0 and (miss < 0 or hit < miss)


CENTRING_PAIRS = (
    "analysis set: the mean delta over all centred_over pairs of this layer (every category, kept or not) "
    "is subtracted before the kept pairs are scored"
)
CENTRING_QUADS = (
    "analysis set: the mean vertical delta and the mean distance delta, each over all centred_over quads of "
    "this layer (kept or not), are subtracted before the kept quads are scored"
)
NO_CENTRING = "none"


def centre(deltas: np.ndarray) -> np.ndarray:
    """Subtract the mean row: `deltas` centred over every row passed in. The metrics call it on the
    whole analysis set and only then select the rows they score."""
    deltas = np.asarray(deltas, dtype=np.float64)
    return deltas - deltas.mean(axis=0, keepdims=True)


def _keep_mask(keep: Sequence[bool] | np.ndarray | None, n: int) -> np.ndarray:
    """`keep` as a boolean row mask of length n (None: every row)."""
    if keep is None:
        return np.ones(n, dtype=bool)
    mask = np.asarray(keep, dtype=bool)
    if mask.shape != (n,):
        raise ValueError(f"keep has shape {mask.shape} but there are {n} rows")
    return mask


def _centring(centre_first: bool, n: int, description: str) -> dict:
    """The fields every centred block carries: how it was centred and over how many rows."""
    return {"centring": description if centre_first else NO_CENTRING, "centred_over": n if centre_first else 0}


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm; zero rows stay zero (so their cosines are 0)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two vectors; 0 if either is zero."""
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norm) if norm > 0 else 0.0


def mean_pairwise_cosine(vectors: np.ndarray) -> dict:
    """Mean and std of the cosine over all unordered row pairs i<j, and n (rows)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    n = len(vectors)
    if n < 2:
        return {"mean": float("nan"), "std": float("nan"), "n": n}
    unit = _unit_rows(vectors)
    cosines = (unit @ unit.T)[np.triu_indices(n, k=1)]
    return {"mean": float(cosines.mean()), "std": float(cosines.std()), "n": n}


def _prepared(
    deltas: np.ndarray, labels: Sequence[str], keep: Sequence[bool] | np.ndarray | None, centre_first: bool
) -> tuple[np.ndarray, np.ndarray, dict]:
    """The kept rows of the analysis set `deltas` and their labels, centred (when asked) by the mean
    over every row of the analysis set, and the centring fields for the blocks."""
    deltas = np.asarray(deltas, dtype=np.float64)
    if len(deltas) != len(labels):
        raise ValueError(f"{len(deltas)} deltas but {len(labels)} categories")
    unknown = set(labels) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown categories {sorted(unknown)}; expected some of {CATEGORIES}")
    mask = _keep_mask(keep, len(deltas))
    centred = centre(deltas) if centre_first else deltas
    return centred[mask], np.asarray(labels)[mask], _centring(centre_first, len(deltas), CENTRING_PAIRS)


def within_category_consistency(
    deltas: np.ndarray,
    categories: Sequence[str],
    *,
    keep: Sequence[bool] | np.ndarray | None = None,
    centre_first: bool = True,
) -> dict[str, dict]:
    """Per category among the kept rows: mean_pairwise_cosine of its deltas, plus the centring fields.

    `deltas` is the whole analysis set of one layer (one row per pair, `categories` its labels);
    `keep` picks the rows to score (default all). The deltas are centred by the mean over every
    row of `deltas`, kept or not, so a category's score depends on its own kept rows only.
    """
    deltas, labels, centring = _prepared(deltas, categories, keep, centre_first)
    present = set(labels.tolist())
    return {c: mean_pairwise_cosine(deltas[labels == c]) | centring for c in CATEGORIES if c in present}


def sign_corrected_consistency(
    deltas: np.ndarray,
    categories: Sequence[str],
    *,
    keep: Sequence[bool] | np.ndarray | None = None,
    centre_first: bool = True,
) -> dict[str, dict]:
    """Per group among the kept rows: mean_pairwise_cosine after flipping right/under/close deltas,
    plus the centring fields.

    If a group's two categories move along one axis in opposite directions, flipping the second
    category's deltas makes the whole group point one way. Centring as in
    `within_category_consistency`: by the mean over the whole analysis set `deltas`, before flipping,
    so a group's score depends on its own kept rows only.
    """
    deltas, labels, centring = _prepared(deltas, categories, keep, centre_first)
    present = {GROUP_OF[c] for c in labels.tolist()}
    out = {}
    for group, (_, second) in AXES.items():
        if group not in present:
            continue
        rows = np.isin(labels, AXES[group])
        signs = np.where(labels[rows] == second, -1.0, 1.0)
        out[group] = mean_pairwise_cosine(deltas[rows] * signs[:, None]) | centring
    return out


def category_similarity(
    deltas: np.ndarray, categories: Sequence[str], centre_first: bool = True
) -> dict[tuple[str, str], float]:
    """Mean cosine between the deltas of every two categories present (the seed's similarity
    matrix); on the diagonal, over distinct pairs within the category. Every row is scored, centred
    by the mean over all of them (the analysis set)."""
    deltas, labels, _ = _prepared(deltas, categories, None, centre_first)
    present = [c for c in CATEGORIES if c in set(labels.tolist())]
    unit = _unit_rows(deltas)
    out = {}
    for a in present:
        for b in present:
            block = unit[labels == a] @ unit[labels == b].T
            if a == b:
                block = block[np.triu_indices(len(block), k=1)]
            out[(a, b)] = float(block.mean()) if block.size else float("nan")
    return out


def cross_group_alignment(
    delta_vertical: np.ndarray,
    delta_distance: np.ndarray,
    n_permutations: int = 100,
    seed: int = 0,
    *,
    keep: Sequence[bool] | np.ndarray | None = None,
    centre_first: bool = True,
) -> dict:
    """Does each scene's distance delta point along the same scene's vertical delta?

    Rows are quads: the whole analysis set of one layer; `keep` picks the quads to score (default
    all). Each matrix is centred by its own mean over every quad of the analysis set, kept or not,
    then the kept quads are scored. The observed statistic is the mean per-quad cosine; the null
    re-pairs whole kept rows (which distance delta goes with which vertical delta), so it keeps
    every direction the two matrices share globally and only tests the per-scene pairing. The
    global agreement is `mean_delta_alignment`, the cosine of the kept rows' mean deltas, computed
    on the uncentred deltas (after centring both analysis-set means are 0). `n` counts the kept
    quads, `centred_over` the quads the means were taken over.
    """
    vertical = np.asarray(delta_vertical, dtype=np.float64)
    distance = np.asarray(delta_distance, dtype=np.float64)
    if vertical.shape != distance.shape:
        raise ValueError(f"shape mismatch: vertical {vertical.shape}, distance {distance.shape}")
    mask = _keep_mask(keep, len(vertical))
    centring = _centring(centre_first, len(vertical), CENTRING_QUADS)
    n = int(mask.sum())
    if n < 2:
        nan = float("nan")
        return {
            "per_sample_mean": nan, "per_sample_std": nan, "n": n, "mean_delta_alignment": nan,
            "null_mean": nan, "null_std": nan, "p_value": nan,
        } | centring  # fmt: skip
    mean_alignment = _cosine(vertical[mask].mean(axis=0), distance[mask].mean(axis=0))
    if centre_first:
        vertical, distance = centre(vertical), centre(distance)
    unit_v, unit_d = _unit_rows(vertical[mask]), _unit_rows(distance[mask])
    cosines = np.einsum("ij,ij->i", unit_v, unit_d)
    observed = cosines.mean()
    rng = np.random.default_rng(seed)
    null = np.array(
        [np.einsum("ij,ij->i", unit_v, unit_d[rng.permutation(n)]).mean()
         for _ in range(n_permutations)]
    )  # fmt: skip
    return {
        "per_sample_mean": float(observed),
        "per_sample_std": float(cosines.std()),
        "n": n,
        "mean_delta_alignment": mean_alignment,
        "null_mean": float(null.mean()) if n_permutations else float("nan"),
        "null_std": float(null.std()) if n_permutations else float("nan"),
        "p_value": float((1 + np.sum(null >= observed)) / (1 + n_permutations)),
    } | centring


def _accuracy(flags: np.ndarray) -> float:
    """Mean of booleans; nan when empty."""
    return float(flags.mean()) if flags.size else float("nan")


def pred_stats(groups: Sequence[str], correct_orig: Sequence[bool], correct_swap: Sequence[bool]) -> dict[str, dict]:
    """Per group present and "all": n and orig, swap and both-correct accuracy over pairs."""
    if not len(groups) == len(correct_orig) == len(correct_swap):
        raise ValueError("groups, correct_orig and correct_swap differ in length")
    labels = np.asarray(groups)
    orig = np.asarray(correct_orig, dtype=bool)
    swap = np.asarray(correct_swap, dtype=bool)
    present = set(groups)
    selections = {g: labels == g for g in AXES if g in present}
    selections["all"] = np.ones(len(labels), dtype=bool)
    return {
        name: {
            "n": int(rows.sum()),
            "orig_accuracy": _accuracy(orig[rows]),
            "swap_accuracy": _accuracy(swap[rows]),
            "both_accuracy": _accuracy(orig[rows] & swap[rows]),
        }
        for name, rows in selections.items()
    }


def category_validity(
    categories: Sequence[str],
    correct_orig: Sequence[bool],
    correct_swap: Sequence[bool],
    threshold: float = 0.6,
) -> dict[str, dict]:
    """Per category present: n pairs, accuracy over both questions, reliable = accuracy >= threshold."""
    if not len(categories) == len(correct_orig) == len(correct_swap):
        raise ValueError("categories, correct_orig and correct_swap differ in length")
    labels = np.asarray(categories)
    answers = np.stack([np.asarray(correct_orig, dtype=bool), np.asarray(correct_swap, dtype=bool)], axis=1)
    out = {}
    for c in CATEGORIES:
        rows = labels == c
        if rows.any():
            accuracy = _accuracy(answers[rows])
            out[c] = {"n": int(rows.sum()), "accuracy": accuracy, "reliable": accuracy >= threshold}
    return out
