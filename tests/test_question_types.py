"""Tests for vlmflow.data.question_types: Kvasir-VQA's fixed strings, the wording rules, options and
candidates per type, and enrich."""

from __future__ import annotations

import pytest

from vlmflow.core.records import Record
from vlmflow.data.question_types import (
    KVASIR_TYPES,
    QUESTION_TYPES,
    QuestionRule,
    answer_vocabulary,
    candidates_for,
    enrich,
    infer_question_type,
    inferred_type,
    options_in_question,
)
from vlmflow.synth import kvasir

KVASIR_EXPECTED = {
    "Are there any abnormalities in the image?": "multi_choice",
    "Are there any anatomical landmarks in the image?": "multi_choice",
    "Are there any instruments in the image?": "multi_choice",
    "Have all polyps been removed?": "yes_no",
    "How many findings are present?": "count_numeric",
    "How many instrumnets are in the image?": "count_numeric",
    "How many polyps are in the image?": "count_numeric",
    "Is there a green/black box artefact?": "yes_no",
    "Is there text?": "yes_no",
    "Is this finding easy to detect?": "yes_no",
    "What color is the abnormality? If more than one separate with ;": "color",
    "What color is the anatomical landmark? If more than one separate with ;": "color",
    "What is the size of the polyp?": "size_numeric",
    "What type of polyp is present?": "single_choice",
    "What type of procedure is the image taken from?": "single_choice",
    "Where in the image is the abnormality?": "location",
    "Where in the image is the anatomical landmark?": "location",
    "Where in the image is the instrument?": "location",
}


def _record(qid: str, question: str, answer: str, **kwargs) -> Record:
    return Record(qid, f"{qid}.jpg", question, [answer], "toy", **kwargs)


def test_kvasir_strings_map_to_their_official_categories() -> None:
    assert set(kvasir.QUESTIONS) == set(KVASIR_EXPECTED)
    assert KVASIR_TYPES == KVASIR_EXPECTED
    assert {q: infer_question_type(q) for q in kvasir.QUESTIONS} == KVASIR_EXPECTED
    assert set(KVASIR_TYPES.values()) <= set(QUESTION_TYPES)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What color is the square?", "color"),
        ("What colour are the walls?", "color"),
        ("How many circles are there?", "count_numeric"),
        ("Is there a red square?", "yes_no"),
        ("Does the sign say stop?", "yes_no"),
        ("What shape is the red object?", "open_ended"),
        ("What does the sign say?", "open_ended"),
        ("How big is the dog?", "size_numeric"),
        ("What is the size of the tumour?", "size_numeric"),
        ("Where is the cat?", "location"),
        ("Is the red square to the left or right of the blue circle?", "single_choice"),
        ("Is the green triangle above or under the yellow square?", "single_choice"),
        ("Is the cup far or close compared to the plate?", "single_choice"),
    ],
)
def test_wording_rules(question: str, expected: str) -> None:
    assert infer_question_type(question) == expected


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Is the red square to the left or right of the blue circle?", ["left", "right"]),
        ("Is the cup far or close compared to the plate?", ["far", "close"]),
        ("Is the green triangle above or under the yellow square?", ["above", "under"]),
        ("Is this a cat or a dog?", ["cat", "dog"]),
        ("Is there a red square?", None),
        ("What color is the square?", None),
    ],
)
def test_options_in_question(question: str, expected: list[str] | None) -> None:
    assert options_in_question(question) == expected


KVASIR_RECORDS = [
    _record("1", kvasir.Q_TYPE, "paris is"),
    _record("2", kvasir.Q_TYPE, "paris ip"),
    _record("3", kvasir.Q_TYPE, "Paris IIa"),
    _record("4", kvasir.Q_TYPE, "paris is"),
    _record("5", kvasir.Q_PROCEDURE, "colonoscopy"),
    _record("6", kvasir.Q_PROCEDURE, "gastroscopy"),
    _record("7", kvasir.Q_INSTRUMENT, "tube; biopsy forceps"),
    _record("8", kvasir.Q_INSTRUMENT, "no"),
    _record("9", kvasir.Q_ABNORMALITY, "polyp"),
    _record("10", kvasir.Q_ABNORMALITY_COLOUR, "none"),
    _record("11", kvasir.Q_ABNORMALITY_COLOUR, "red"),
    _record("12", kvasir.Q_EASY, "not relevant"),
    _record("13", kvasir.Q_EASY, "yes"),
    _record("14", kvasir.Q_N_POLYPS, "2"),
    _record("15", "What color is the square?", "red"),
    _record("16", "What color is the circle?", "Blue"),
    _record("17", "What shape is the red object?", "circle"),
]


def test_vocabulary_is_keyed_by_fixed_string_else_by_type() -> None:
    vocabulary = answer_vocabulary(KVASIR_RECORDS, inferred_type)
    assert vocabulary[kvasir.Q_TYPE] == ["paris iia", "paris ip", "paris is"]
    assert vocabulary[kvasir.Q_PROCEDURE] == ["colonoscopy", "gastroscopy"]
    assert vocabulary[kvasir.Q_INSTRUMENT] == ["no", "tube; biopsy forceps"]  # whole answers
    assert vocabulary[kvasir.Q_ABNORMALITY_COLOUR] == ["none", "red"]  # not normalised to "0"
    assert vocabulary["color"] == ["blue", "red"]
    assert "single_choice" not in vocabulary and "open_ended" not in vocabulary


def test_candidates_per_type() -> None:
    vocabulary = answer_vocabulary(KVASIR_RECORDS)
    assert candidates_for("yes_no", "Is there a red square?", vocabulary) == ["yes", "no"]
    assert candidates_for("yes_no", kvasir.Q_EASY, vocabulary) == ["yes", "no", "not relevant"]
    assert candidates_for("single_choice", kvasir.Q_TYPE, vocabulary) == [
        "paris iia",
        "paris ip",
        "paris is",
    ]
    assert candidates_for("single_choice", kvasir.Q_PROCEDURE, vocabulary) == [
        "colonoscopy",
        "gastroscopy",
    ]
    swap = "Is the cup far or close compared to the plate?"
    assert candidates_for("single_choice", swap, vocabulary) == ["far", "close"]
    assert candidates_for("color", "What color is the triangle?", vocabulary) == ["blue", "red"]
    assert candidates_for("multi_choice", kvasir.Q_INSTRUMENT, vocabulary) == [
        "no",
        "tube; biopsy forceps",
    ]
    assert candidates_for("location", kvasir.Q_LANDMARK_WHERE, vocabulary) is None  # none seen
    assert candidates_for("count_numeric", kvasir.Q_N_POLYPS, vocabulary) is None
    assert candidates_for("size_numeric", kvasir.Q_SIZE, vocabulary) is None
    assert candidates_for("open_ended", "What shape is the red object?", vocabulary) is None


def test_enrich_keeps_existing_candidates_and_fills_the_others() -> None:
    swap = _record("s", "Is the cup far or close compared to the plate?", "far", candidates=["far", "close"])
    swap = Record(**{**swap.to_json(), "source": {"pair_id": "s"}})
    kept_empty = _record("e", "What color is the cube?", "red", candidates=[])
    records = [swap, kept_empty, *KVASIR_RECORDS]
    enriched = enrich(records)
    by_id = {r.question_id: r for r in enriched}
    assert [r.question_id for r in enriched] == [r.question_id for r in records]
    assert by_id["s"].candidates == ["far", "close"]
    assert by_id["s"].source == {"pair_id": "s", "inferred_type": "single_choice"}
    assert swap.source == {"pair_id": "s"}  # the input is not mutated
    assert by_id["e"].candidates == []
    assert by_id["1"].candidates == ["paris iia", "paris ip", "paris is"]
    assert by_id["5"].candidates == ["colonoscopy", "gastroscopy"]
    assert by_id["14"].candidates is None
    assert by_id["14"].source["inferred_type"] == "count_numeric"
    assert all(r.source["inferred_type"] == inferred_type(r) for r in enriched)


def test_enrich_draws_options_from_vocabulary_records() -> None:
    train = [_record("t", kvasir.Q_TYPE, "paris iia")]
    test = [_record("v", kvasir.Q_TYPE, "paris is")]
    assert enrich(test, vocabulary_records=train)[0].candidates == ["paris iia"]


def test_config_rules_come_first_and_bring_their_candidates():
    rules = QuestionRule.from_config(
        [
            {"pattern": "what shape", "type": "single_choice", "candidates": ["circle", "square"]},
            {"pattern": r"which (organ|tissue)", "type": "single_choice"},
        ],
        "datasets.mine.question_types",
    )
    shape = Record(
        question_id="1", image="a.png", question="What shape is the red object?", answers=["circle"], dataset="d"
    )
    organ = Record(question_id="2", image="a.png", question="Which organ is shown?", answers=["liver"], dataset="d")
    other = Record(question_id="3", image="a.png", question="Which organ or tissue?", answers=["tissue"], dataset="d")
    assert infer_question_type(shape.question) == "open_ended"  # the built-in rules alone
    enriched = enrich([shape, organ, other], rules=rules)
    assert [r.source["inferred_type"] for r in enriched] == ["single_choice"] * 3
    assert enriched[0].candidates == ["circle", "square"]
    assert enriched[1].candidates == ["liver", "tissue"]  # the answers seen for this rule's questions
    assert enriched[2].candidates == ["organ", "tissue"]  # options the question names still come first


def test_a_bad_rule_names_its_config_key():
    with pytest.raises(ValueError, match=r"datasets.mine.question_types\[0\].pattern: not a regular expression"):
        QuestionRule.from_config([{"pattern": "what (shape", "type": "single_choice"}], "datasets.mine.question_types")
    with pytest.raises(ValueError, match=r"datasets.mine.question_types\[0\].type: 'shape'"):
        QuestionRule.from_config([{"pattern": "what shape", "type": "shape"}], "datasets.mine.question_types")


def test_what_is_the_colour_of_is_a_colour_question():
    assert infer_question_type("What is the color of the car?") == "color"
    assert infer_question_type("what is the colour of the sign") == "color"
