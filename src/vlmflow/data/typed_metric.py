"""Per-question-type scoring for single-reference datasets (Kvasir-VQA style).

One normalised exact match treats "15mm" against the bucket "11-20mm", "three" against "3",
and "biopsy forceps;tube" against "tube; biopsy forceps" as wrong. Here each type gets its own
primary score: numbers and ranges are compared as intervals, multi-answers as sets (with F1 as
partial credit), everything else by normalised exact match. `exact` is always reported too, so
the two can be compared.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vlmflow.data.question_types import QUESTION_TYPES
from vlmflow.data.vqa_metric import exact_match, normalize_answer

NUMERIC_TYPES: frozenset[str] = frozenset({"count_numeric", "size_numeric"})

_NUM = r"(\d+(?:\.\d+)?)"
_RANGE = re.compile(_NUM + r"\s*(?:-|–|to)\s*" + _NUM)
_BELOW = re.compile(r"<=?\s*" + _NUM)
_ABOVE = re.compile(r">=?\s*" + _NUM)
_NUMBER = re.compile(_NUM)


@dataclass(frozen=True)
class Tolerance:
    """How far apart a numeric prediction and answer may be and still match.

    Each interval end is widened by max(abs_tol, rel_tol * |end|). Counts are usually scored
    with abs_tol 0 (exact); sizes need no tolerance when the answers are buckets such as
    "11-20mm", since a prediction inside the bucket already overlaps it.
    """

    abs_tol: float = 0.0
    rel_tol: float = 0.0


def parse_numeric(text: str) -> tuple[float, float] | None:
    """The first non-negative number or range in `text` as (low, high), or None.

    "11-20mm" -> (11, 20), "<5mm" -> (0, 5), ">20mm" -> (20, inf), "three" -> (3, 3). Units are
    dropped, not converted. Number words are read through `normalize_answer`, so "none" is 0.
    """
    text = text.lower()
    if not any(c.isdigit() for c in text):
        text = normalize_answer(text)
    if match := _RANGE.search(text):
        low, high = float(match.group(1)), float(match.group(2))
        return (min(low, high), max(low, high))
    if match := _BELOW.search(text):
        return (0.0, float(match.group(1)))
    if match := _ABOVE.search(text):
        return (float(match.group(1)), math.inf)
    if match := _NUMBER.search(text):
        return (float(match.group(1)),) * 2
    return None


def _widen(interval: tuple[float, float], abs_tol: float, rel_tol: float) -> tuple[float, float]:
    low, high = interval
    return (low - max(abs_tol, rel_tol * abs(low)), high + max(abs_tol, rel_tol * abs(high)))


def _atom_match(prediction: str, answer: str, abs_tol: float, rel_tol: float) -> bool:
    pred, ans = parse_numeric(prediction), parse_numeric(answer)
    if pred is None or ans is None:
        return normalize_answer(prediction) == normalize_answer(answer)
    (p_low, p_high), (a_low, a_high) = _widen(pred, abs_tol, rel_tol), _widen(ans, abs_tol, rel_tol)
    low, high = max(p_low, a_low), min(p_high, a_high)
    # Ranges that only touch ("<5mm" and "5-10mm") are distinct buckets; a point on a bound
    # ("5" against "5-10mm") is inside it.
    return low < high or (low == high and (p_low == p_high or a_low == a_high))


def numeric_match(prediction: str, answer: str, *, abs_tol: float = 0.0, rel_tol: float = 0.0) -> float:
    """1.0 if the two values, each widened by the tolerance, overlap, else 0.0.

    A point inside a range matches it ("15mm" vs "11-20mm"). Sides without a number are
    compared by normalised exact match ("not relevant"). ";"-separated multi-answers (Kvasir
    sizes of several polyps) match when every atom on each side matches one on the other.
    """
    preds = [p for p in prediction.split(";") if p.strip()] or [prediction]
    answers = [a for a in answer.split(";") if a.strip()] or [answer]
    covered = all(any(_atom_match(p, a, abs_tol, rel_tol) for p in preds) for a in answers)
    supported = all(any(_atom_match(p, a, abs_tol, rel_tol) for a in answers) for p in preds)
    return 1.0 if covered and supported else 0.0


def answer_set(text: str) -> frozenset[str]:
    """The normalised ";"-separated atoms of a multi-answer, empty ones dropped."""
    return frozenset(atom for atom in map(normalize_answer, text.split(";")) if atom)


def set_match(prediction: str, answer: str) -> float:
    """1.0 iff both name the same atoms, in any order."""
    return 1.0 if answer_set(prediction) == answer_set(answer) else 0.0


def set_f1(prediction: str, answer: str) -> float:
    """F1 of the predicted atoms against the answer's: partial credit for multi-answers."""
    pred, gold = answer_set(prediction), answer_set(answer)
    if not pred and not gold:
        return 1.0
    hits = len(pred & gold)
    if hits == 0:
        return 0.0
    precision, recall = hits / len(pred), hits / len(gold)
    return 2 * precision * recall / (precision + recall)


def score(qtype: str, prediction: str, answers: Sequence[str], tolerance: Tolerance = Tolerance()) -> dict[str, float]:
    """One item's scores: `exact`, the type's primary score `correct`, and `f1` (multi_choice)."""
    scores = {"exact": exact_match(prediction, answers)}
    if qtype in NUMERIC_TYPES:
        scores["correct"] = max(
            numeric_match(prediction, a, abs_tol=tolerance.abs_tol, rel_tol=tolerance.rel_tol) for a in answers
        )
    elif qtype == "multi_choice":
        scores["correct"] = max(set_match(prediction, a) for a in answers)
        scores["f1"] = max(set_f1(prediction, a) for a in answers)
    else:
        scores["correct"] = scores["exact"]
    return scores


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _type_order(qtype: str) -> tuple[int, str]:
    """QUESTION_TYPES order first, then any other label alphabetically."""
    known = QUESTION_TYPES.index(qtype) if qtype in QUESTION_TYPES else len(QUESTION_TYPES)
    return (known, qtype)


def typed_report(items: Iterable[Mapping[str, Any]], tolerance: Tolerance = Tolerance()) -> dict[str, Any]:
    """Micro, macro and per-type accuracy over items with prediction, answers and qtype.

    micro is the mean `correct` over items; macro the mean over types of each type's accuracy,
    so that rare types weigh as much as frequent ones. Fractions in [0, 1]; empty input gives 0.
    """
    by_type: dict[str, list[dict[str, float]]] = {}
    for item in items:
        scores = score(item["qtype"], item["prediction"], item["answers"], tolerance)
        by_type.setdefault(item["qtype"], []).append(scores)
    per_type: dict[str, dict[str, Any]] = {}
    for qtype in sorted(by_type, key=_type_order):
        scores = by_type[qtype]
        block: dict[str, Any] = {
            "n": len(scores),
            "accuracy": _mean([s["correct"] for s in scores]),
            "exact": _mean([s["exact"] for s in scores]),
        }
        if qtype == "multi_choice":
            block["f1"] = _mean([s["f1"] for s in scores])
        per_type[qtype] = block
    correct = [s["correct"] for scores in by_type.values() for s in scores]
    return {
        "n": len(correct),
        "micro": _mean(correct),
        "macro": _mean([block["accuracy"] for block in per_type.values()]),
        "per_type": per_type,
    }


def report_table_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per type (qtype, n, accuracy, exact, f1; f1 is None outside multi_choice)."""
    return [
        {
            "qtype": qtype,
            "n": block["n"],
            "accuracy": block["accuracy"],
            "exact": block["exact"],
            "f1": block.get("f1"),
        }
        for qtype, block in report["per_type"].items()
    ]


def markdown_table(report: Mapping[str, Any]) -> str:
    """The per-type rows as a GitHub markdown table, closed by a micro / macro line."""

    def cell(value: float | None) -> str:
        return "" if value is None else f"{value:.3f}"

    lines = ["| type | n | accuracy | exact | f1 |", "|---|---:|---:|---:|---:|"]
    for row in report_table_rows(report):
        values = [cell(row[k]) for k in ("accuracy", "exact", "f1")]
        lines.append(f"| {row['qtype']} | {row['n']} | {' | '.join(values)} |")
    micro_macro = f"{cell(report['micro'])} / {cell(report['macro'])}"
    lines.append(f"| **micro / macro** | {report['n']} | {micro_macro} |  |  |")
    return "\n".join(lines) + "\n"
