"""Tests for vlmflow.data.typed_metric: numbers and ranges with tolerances, multi-answer sets and F1,
per-type scores, micro vs macro, and the report tables."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vlmflow.data.typed_metric import (
    Tolerance,
    answer_set,
    markdown_table,
    numeric_match,
    parse_numeric,
    report_table_rows,
    score,
    set_f1,
    set_match,
    split_atoms,
    typed_report,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3", (3, 3)),
        ("three", (3, 3)),
        ("Three polyps", (3, 3)),
        ("11-20mm", (11, 20)),
        ("5-10 mm", (5, 10)),
        ("<5mm", (0, 5)),
        (">20mm", (20, math.inf)),
        ("2.5 cm", (2.5, 2.5)),
        # Whichever number or range comes first in the text (was: any range before any number).
        ("about 5, or 3-4", (5, 5)),
        ("3-4, or about 5", (3, 4)),
        ("size <5mm, maybe 5-10mm", (0, 5)),
        # Thousands separators (was: "1,000" -> 1).
        ("1,000", (1000, 1000)),
        ("12,345,678 cells", (12345678, 12345678)),
        ("1,000-2,000", (1000, 2000)),
        ("1,5", (1, 1)),  # not a thousands group: two numbers, the first taken
        ("1, 2", (1, 1)),
        # Units on each bound (was: "5mm-10mm" -> 5).
        ("5mm-10mm", (5, 10)),
        ("5 mm - 10 mm", (5, 10)),
        ("from 5 cm to 10 cm", (5, 10)),
        ("5 minutes", (5, 5)),
        ("not relevant", None),
        ("polyp", None),
    ],
)
def test_parse_numeric(text: str, expected: tuple[float, float] | None) -> None:
    assert parse_numeric(text) == expected


def test_tolerance_is_applied_once_to_the_reference() -> None:
    # abs_tol 1 widens 6.9 to [5.9, 7.9]: 6 is in, 5 is not (widening both sides, as before,
    # gave [4, 6] against [5.9, 7.9] and accepted 5).
    assert numeric_match("5", "6.9", abs_tol=1) == 0.0
    assert numeric_match("6", "6.9", abs_tol=1) == 1.0
    assert numeric_match("7.9", "6.9", abs_tol=1) == 1.0
    assert numeric_match("8", "6.9", abs_tol=1) == 0.0
    # rel_tol scales with the reference, not the prediction: 100 +- 10% is [90, 110].
    assert numeric_match("90", "100", rel_tol=0.1) == 1.0
    assert numeric_match("100", "90", rel_tol=0.1) == 0.0  # 90 +- 9 is [81, 99]
    # A predicted range must lie inside the widened reference, not merely overlap it.
    assert numeric_match("6-7", "6.9", abs_tol=1) == 1.0
    assert numeric_match("5-7", "6.9", abs_tol=1) == 0.0
    assert numeric_match("12-18mm", "11-20mm") == 1.0
    assert numeric_match("10-15mm", "11-20mm") == 0.0
    assert numeric_match("10-15mm", "11-20mm", abs_tol=1) == 1.0
    assert numeric_match(">20mm", "25") == 0.0
    assert numeric_match(">20mm", ">20mm", abs_tol=1) == 1.0


def test_numeric_tolerance_absolute_and_relative() -> None:
    assert numeric_match("4", "5") == 0.0
    assert numeric_match("4", "5", abs_tol=1) == 1.0
    assert numeric_match("3", "5", abs_tol=0.9) == 0.0
    assert numeric_match("95", "100", rel_tol=0.05) == 1.0
    assert numeric_match("90", "100", rel_tol=0.04) == 0.0
    assert numeric_match("four", "5", abs_tol=1) == 1.0


@pytest.mark.parametrize(
    ("prediction", "answer", "expected"),
    [
        ("15mm", "11-20mm", 1.0),
        # A bucket is not a point inside it (was 1.0, when overlap sufficed).
        ("11-20mm", "15mm", 0.0),
        ("5", "5-10mm", 1.0),  # bounds are inclusive
        ("about 5, or 3-4", "5", 1.0),
        ("1,000", "1000", 1.0),
        ("5mm-10mm", "5-10mm", 1.0),
        ("3", "<5mm", 1.0),
        ("7", "<5mm", 0.0),
        ("25", ">20mm", 1.0),
        ("12", ">20mm", 0.0),
        ("5-10mm", "11-20mm", 0.0),
        ("<5mm", "5-10mm", 0.0),  # adjacent buckets only touch
        ("11-20 mm", "11-20mm", 1.0),
        ("not relevant", "not relevant", 1.0),
        ("5mm", "not relevant", 0.0),
        ("5-10mm; 11-20mm", "11-20mm;5-10mm", 1.0),
        ("11-20mm", "5-10mm; 11-20mm", 0.0),
        # A set reference: the prediction may list its values with ",", "and" or "&" too.
        ("11-20mm, 5-10mm", "5-10mm; 11-20mm", 1.0),
        ("5mm-10mm and 11-20mm", "5-10mm; 11-20mm", 1.0),
        ("5-10mm & <5mm", "5-10mm; 11-20mm", 0.0),
        ("1, 2", "1; 2", 1.0),
        ("1,000", "1; 2", 0.0),  # one number, not the set {1, 0}
    ],
)
def test_numeric_ranges(prediction: str, answer: str, expected: float) -> None:
    assert numeric_match(prediction, answer) == expected


def test_tolerance_widening_makes_neighbours_match() -> None:
    assert numeric_match("4", "5-10mm") == 0.0
    assert numeric_match("4", "5-10mm", abs_tol=1) == 1.0
    # A neighbouring bucket only touches the widened reference [10, 21]: not inside it (was 1.0).
    assert numeric_match("5-10mm", "11-20mm", abs_tol=1) == 0.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tube; biopsy forceps", ["tube", "biopsy forceps"]),
        ("polyp;instrument", ["polyp", "instrument"]),
        ("tube, biopsy forceps", ["tube", "biopsy forceps"]),
        ("tube and biopsy forceps", ["tube", "biopsy forceps"]),
        ("polyp, cecum, and tube", ["polyp", "cecum", "tube"]),
        ("tube & snare", ["tube", "snare"]),
        ("Android", ["Android"]),
        ("1,000", ["1,000"]),
        ("1,000,000 and 2", ["1,000,000", "2"]),
        ("1, 2", ["1", "2"]),
        ("1,2", ["1", "2"]),
        ("12345,678", ["12345", "678"]),
        (" ; ", []),
    ],
)
def test_split_atoms(text: str, expected: list[str]) -> None:
    assert split_atoms(text) == expected


def test_answer_sets() -> None:
    assert answer_set("tube; biopsy forceps") == {"tube", "biopsy forceps"}
    assert answer_set("The tube and biopsy forceps") == {"tube", "biopsy forceps"}
    assert answer_set("Biopsy forceps, tube") == {"tube", "biopsy forceps"}
    assert answer_set("1,000") == {"1000"}
    assert set_match("biopsy forceps & tube", "tube;biopsy forceps") == 1.0
    assert set_f1("tube, snare", "tube; biopsy forceps") == pytest.approx(0.5)
    assert answer_set(" ; The Tube;") == {"tube"}
    assert set_match("tube; biopsy forceps", "biopsy forceps;tube") == 1.0
    assert set_match("tube", "biopsy forceps;tube") == 0.0
    assert set_f1("tube", "tube; biopsy forceps") == pytest.approx(2 / 3)
    assert set_f1("tube; snare", "tube; biopsy forceps") == pytest.approx(0.5)
    assert set_f1("snare", "tube") == 0.0
    assert set_f1("", "") == 1.0


ATOMS = st.lists(st.sampled_from(["tube", "biopsy forceps", "polyp", "no", "Red", "two"]))


@given(ATOMS, ATOMS)
def test_set_scores_are_symmetric_and_bounded(a: list[str], b: list[str]) -> None:
    left, right = ";".join(a), "; ".join(b)
    assert set_match(left, right) == set_match(right, left)
    assert 0.0 <= set_f1(left, right) <= 1.0
    assert set_f1(left, right) == pytest.approx(set_f1(right, left))
    assert set_f1(left, left) == 1.0


@given(
    st.one_of(
        st.integers(0, 10_000).map(str),
        st.tuples(st.integers(0, 99), st.integers(0, 99)).map(lambda t: f"{t[0]}-{t[1]}mm"),
        st.sampled_from(["<5mm", ">20mm", "three", "none", "not relevant"]),
    ),
    st.floats(0, 5),
)
def test_numeric_match_is_reflexive(text: str, abs_tol: float) -> None:
    assert numeric_match(text, text, abs_tol=abs_tol) == 1.0


def test_score_per_type() -> None:
    assert score("count_numeric", "three", ["3"]) == {"exact": 1.0, "correct": 1.0}
    assert score("size_numeric", "15mm", ["11-20mm"]) == {"exact": 0.0, "correct": 1.0}
    assert score("count_numeric", "4", ["5"], Tolerance(abs_tol=1)) == {
        "exact": 0.0,
        "correct": 1.0,
    }
    assert score("count_numeric", "5", ["6.9"], Tolerance(abs_tol=1))["correct"] == 0.0
    assert score("count_numeric", "1,000", ["1000"]) == {"exact": 1.0, "correct": 1.0}
    assert score("multi_choice", "tube and biopsy forceps", ["biopsy forceps;tube"])["correct"] == 1.0
    multi = score("multi_choice", "tube", ["tube; biopsy forceps"])
    assert multi == {"exact": 0.0, "correct": 0.0, "f1": pytest.approx(2 / 3)}
    assert score("color", "Red", ["red"]) == {"exact": 1.0, "correct": 1.0}


ITEMS = [
    # yes_no: 3 of 4 correct
    {"qtype": "yes_no", "prediction": "yes", "answers": ["yes"]},
    {"qtype": "yes_no", "prediction": "no", "answers": ["no"]},
    {"qtype": "yes_no", "prediction": "yes", "answers": ["yes"]},
    {"qtype": "yes_no", "prediction": "yes", "answers": ["no"]},
    # size_numeric: 1 of 1 correct by range, 0 exact
    {"qtype": "size_numeric", "prediction": "15mm", "answers": ["11-20mm"]},
    # multi_choice: 0 of 1 correct, f1 2/3
    {"qtype": "multi_choice", "prediction": "tube", "answers": ["tube; biopsy forceps"]},
]


def test_micro_and_macro() -> None:
    report = typed_report(ITEMS)
    assert report["n"] == 6
    assert report["micro"] == pytest.approx(4 / 6)
    assert report["macro"] == pytest.approx((3 / 4 + 1 + 0) / 3)
    assert list(report["per_type"]) == ["yes_no", "size_numeric", "multi_choice"]
    assert report["per_type"]["yes_no"] == {"n": 4, "accuracy": 0.75, "exact": 0.75}
    assert report["per_type"]["size_numeric"] == {"n": 1, "accuracy": 1.0, "exact": 0.0}
    multi = report["per_type"]["multi_choice"]
    assert multi == {"n": 1, "accuracy": 0.0, "exact": 0.0, "f1": pytest.approx(2 / 3)}
    assert typed_report([]) == {"n": 0, "micro": 0.0, "macro": 0.0, "per_type": {}}


def test_table_rows_and_markdown() -> None:
    report = typed_report(ITEMS)
    rows = report_table_rows(report)
    assert [row["qtype"] for row in rows] == ["yes_no", "size_numeric", "multi_choice"]
    assert set(rows[0]) == {"qtype", "n", "accuracy", "exact", "f1"}
    assert rows[0]["f1"] is None and rows[2]["f1"] == pytest.approx(2 / 3)

    lines = markdown_table(report).splitlines()
    assert len(lines) == 2 + 3 + 1  # header, separator, one per type, micro / macro
    assert all(line.startswith("|") and line.endswith("|") for line in lines)
    assert {line.count("|") for line in lines} == {6}
    assert lines[2] == "| yes_no | 4 | 0.750 | 0.750 |  |"
    assert lines[4] == "| multi_choice | 1 | 0.000 | 0.000 | 0.667 |"
    assert lines[-1] == "| **micro / macro** | 6 | 0.667 / 0.583 |  |  |"
