"""Per-question-type scoring for single-reference datasets (Kvasir-VQA style).

One normalised exact match treats "15mm" against the bucket "11-20mm", "three" against "3",
and "biopsy forceps;tube" against "tube; biopsy forceps" as wrong. Here each type gets its own
primary score: numbers and ranges are compared as intervals (the prediction must lie inside the
reference widened once by the tolerance), multi-answers as sets split on ";", ",", "&" and "and"
(with F1 as partial credit), everything else by normalised exact match. `exact` is always
reported too, so the two can be compared.
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

# A non-negative number: ASCII digits, with optional thousands separators ("1,000", "12,345,678":
# a comma followed by exactly three digits) and an optional decimal part. "1,5" and "1, 2" are two
# numbers.
_NUM = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?"
# A unit written after a range's first bound ("5mm-10mm"); it is dropped, not converted.
_UNIT = r"(?:\s*(?:mm|cm|µm|μm|um|nm|km|m|in|ft|px|%)(?![a-z]))?"
# Earliest match in the text wins; at one position a range beats a lone number ("5-10" vs "5").
_VALUE = re.compile(
    rf"(?P<low>{_NUM}){_UNIT}\s*(?:-|–|—|\bto\b)\s*(?P<high>{_NUM})"
    rf"|<=?\s*(?P<below>{_NUM})"
    rf"|>=?\s*(?P<above>{_NUM})"
    rf"|(?P<point>{_NUM})",
    re.ASCII,
)
_DIGIT = re.compile(r"\d", re.ASCII)
# Separators of a set answer: ";" (Kvasir's own), ",", "&" and the word "and".
_SET_SEPARATOR = re.compile(r";|,|&|\band\b", re.ASCII | re.IGNORECASE)
# A number with thousands separators: its commas do not separate atoms ("1,000" is one).
_THOUSANDS = re.compile(r"(?<!\d)\d{1,3}(?:,\d{3})+(?!\d)", re.ASCII)


@dataclass(frozen=True)
class Tolerance:
    """How far a numeric prediction may lie from the reference and still match.

    Only the reference is widened, once: its interval [low, high] becomes
    [low - max(abs_tol, rel_tol * |low|), high + max(abs_tol, rel_tol * |high|)] (an infinite
    end stays infinite), and the prediction must lie inside it (see :func:`numeric_match`).
    Counts are usually scored with abs_tol 0 (exact); sizes need no tolerance when the answers
    are buckets such as "11-20mm", since a prediction inside the bucket already matches it.
    """

    abs_tol: float = 0.0
    rel_tol: float = 0.0


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def parse_numeric(text: str) -> tuple[float, float] | None:
    """The first non-negative number or range in `text` as (low, high), or None.

    "11-20mm" -> (11, 20), "5mm-10mm" -> (5, 10), "5 to 10" -> (5, 10), "<5mm" -> (0, 5),
    ">20mm" -> (20, inf), "three" -> (3, 3), "1,000" -> (1000, 1000). Whichever number or range
    starts first in the text is taken ("about 5, or 3-4" -> (5, 5)). Units are dropped, not
    converted. Digits are ASCII digits. A text without digits is read through
    `normalize_answer`, so number words count ("none" is 0).
    """
    text = text.lower()
    if not _DIGIT.search(text):
        text = normalize_answer(text)
    match = _VALUE.search(text)
    if match is None:
        return None
    if match["low"] is not None:
        low, high = _number(match["low"]), _number(match["high"])
        return (min(low, high), max(low, high))
    if match["below"] is not None:
        return (0.0, _number(match["below"]))
    if match["above"] is not None:
        return (_number(match["above"]), math.inf)
    return (_number(match["point"]),) * 2


def _widen(interval: tuple[float, float], abs_tol: float, rel_tol: float) -> tuple[float, float]:
    def margin(end: float) -> float:
        return max(abs_tol, rel_tol * abs(end)) if math.isfinite(end) else 0.0

    low, high = interval
    return (low - margin(low), high + margin(high))


def _atom_match(prediction: str, answer: str, abs_tol: float, rel_tol: float) -> bool:
    """The predicted interval lies inside the answer's interval widened by the tolerance."""
    pred, ans = parse_numeric(prediction), parse_numeric(answer)
    if pred is None or ans is None:
        return normalize_answer(prediction) == normalize_answer(answer)
    low, high = _widen(ans, abs_tol, rel_tol)
    return low <= pred[0] and pred[1] <= high


def split_atoms(text: str) -> list[str]:
    """The atoms of a set answer: split on ";", ",", "&" and the word "and", empty atoms dropped.

    Commas inside a number with thousands separators (1-3 digits, then groups of a comma and
    exactly three digits) are kept: "1,000" is one atom; "1, 2", "1,2" and "1,0005" are two.
    """
    protected = [m.span() for m in _THOUSANDS.finditer(text)]
    atoms, start = [], 0
    for sep in _SET_SEPARATOR.finditer(text):
        if not any(low <= sep.start() < high for low, high in protected):
            atoms.append(text[start : sep.start()])
            start = sep.end()
    atoms.append(text[start:])
    return [atom.strip() for atom in atoms if atom.strip()]


def numeric_match(prediction: str, answer: str, *, abs_tol: float = 0.0, rel_tol: float = 0.0) -> float:
    """1.0 if the prediction lies within the answer widened by the tolerance, else 0.0.

    Each side is read as its first number or range (:func:`parse_numeric`). The tolerance widens
    the *answer* only (:class:`Tolerance`), and the prediction's whole interval must be contained
    in the widened answer, bounds included:

    - a point matches a point within the tolerance (abs_tol 1: "6" matches "6.9", "5" does not);
    - a point matches a range it lies in ("15mm" vs "11-20mm", "5" vs "5-10mm");
    - a range matches only a range (or a tolerance) that contains it: "11-20mm" does not match
      "15mm", and ranges that only touch ("<5mm" and "5-10mm") or overlap do not match.

    Sides without a number are compared by normalised exact match ("not relevant"). A set answer
    (several atoms, :func:`split_atoms`: Kvasir's sizes of several polyps) matches when every
    answer atom contains some predicted atom and every predicted atom lies in some answer atom;
    the prediction is then split the same way ("5-10mm and 11-20mm"). Against a single-valued
    answer the prediction is split on ";" only, so "about 5, or 3-4" reads as 5.
    """
    answers = split_atoms(answer) or [answer]
    if len(answers) > 1:
        preds = split_atoms(prediction) or [prediction]
    else:
        preds = [p for p in prediction.split(";") if p.strip()] or [prediction]
    covered = all(any(_atom_match(p, a, abs_tol, rel_tol) for p in preds) for a in answers)
    supported = all(any(_atom_match(p, a, abs_tol, rel_tol) for a in answers) for p in preds)
    return 1.0 if covered and supported else 0.0


def answer_set(text: str) -> frozenset[str]:
    """The normalised atoms of a multi-answer (:func:`split_atoms`: ";", ",", "&", "and")."""
    return frozenset(atom for atom in map(normalize_answer, split_atoms(text)) if atom)


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
