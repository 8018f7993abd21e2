"""Answer modes: answer extraction, format adherence, and each mode run on a tiny model."""

from __future__ import annotations

import json

import pytest
from conftest import make_records

from vlmflow.core.answer_modes import (
    COT_PROMPT,
    MODES,
    extract_answer,
    format_followed,
    user_prompt,
)
from vlmflow.core.models import load_vlm
from vlmflow.core.settings import DEFAULT_PROMPT, GenerationSettings
from vlmflow.vqa.inference import answer_batch, check_settings, run_inference


@pytest.mark.parametrize(
    ("raw", "answer"),
    [
        ("Red.", "Red"),
        ("The square is red.\nAnswer: red.", "red"),
        ("Answer: blue\nmore text\nFinal answer: green!", "green"),
        ("<think>it could be blue</think>\nyellow", "yellow"),
        ("<think>no closing tag, rambling on", ""),
        ('Reasoning: the shape has three corners.\nAnswer: "triangle"', "triangle"),
        ("Answer:\n3", "3"),  # the answer may sit on the line after its label
    ],
)
def test_extract_answer(raw: str, answer: str) -> None:
    assert extract_answer(raw) == answer


@pytest.mark.parametrize(
    ("mode", "raw", "followed"),
    [
        ("normal", "red", True),
        ("normal", "the colour of the square is a deep red", False),
        ("normal", "red\nbecause", False),
        ("two_pass", "3", True),
        ("prompt", "It has three corners.\nAnswer: triangle", True),
        ("prompt", "triangle", False),
        ("explicit_cot", "Reasoning: three corners.\nAnswer: triangle", True),
        ("explicit_cot", "Answer: triangle", False),
        ("explicit_cot", "<think>x</think>Reasoning: ok\n Answer: 2", True),
    ],
)
def test_format_followed(mode: str, raw: str, followed: bool) -> None:
    assert format_followed(mode, raw) is followed


def test_prompts_and_settings_are_checked() -> None:
    assert user_prompt("normal", DEFAULT_PROMPT) == DEFAULT_PROMPT
    assert user_prompt("prompt", DEFAULT_PROMPT) == COT_PROMPT
    with pytest.raises(ValueError, match="unknown answer mode 'cot'"):
        user_prompt("cot", DEFAULT_PROMPT)
    with pytest.raises(ValueError, match="needs mode 'normal'"):
        check_settings(GenerationSettings(mode="two_pass", decoding="constrained"))
    with pytest.raises(ValueError, match="unknown decoding"):
        check_settings(GenerationSettings(decoding="beam"))


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_answers_and_keeps_the_raw_output(mode, tiny_checkpoints, tmp_path) -> None:
    model, processor = load_vlm(tiny_checkpoints["qwen2_vl"], device="cpu")
    records = make_records(tmp_path / "images", 3)
    settings = GenerationSettings(batch_size=3, max_new_tokens=3, reasoning_tokens=6, mode=mode)
    output = tmp_path / "predictions.jsonl"
    run_inference(model, processor, records, output, settings, resume_key={"mode": mode})
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["question_id"] for r in rows] == [r.question_id for r in records]
    for row in rows:
        assert row["prediction"] == extract_answer(row["raw_output"])
        assert row["format_ok"] == format_followed(mode, row["raw_output"])
        assert ("rationale" in row) == (mode == "two_pass")


def test_two_pass_feeds_the_rationale_to_the_second_pass(tiny_checkpoints, tmp_path, monkeypatch) -> None:
    import vlmflow.vqa.inference as inference

    model, processor = load_vlm(tiny_checkpoints["qwen2_vl"], device="cpu")
    records = make_records(tmp_path / "images", 2)
    seen: list[list[str]] = []

    def fake_generate(model, processor, batch, settings, user_texts=None, max_new_tokens=None):
        seen.append(list(user_texts))
        return ["because it is red", "blue"] if len(seen) == 1 else ["red", "Answer: blue\nas the notes say"]

    monkeypatch.setattr(inference, "generate_batch", fake_generate)
    rows = answer_batch(model, processor, records, GenerationSettings(mode="two_pass"))
    assert "Notes: because it is red" in seen[1][0] and records[0].question in seen[1][0]
    assert [r["prediction"] for r in rows] == ["red", "blue"]
    assert [r["rationale"] for r in rows] == ["because it is red", "blue"]
    assert [r["format_ok"] for r in rows] == [True, False]


@pytest.mark.parametrize("decoding", ["constrained", "likelihood"])
def test_closed_decodings_answer_from_the_candidates(decoding, tiny_checkpoints, tmp_path) -> None:
    import dataclasses

    model, processor = load_vlm(tiny_checkpoints["qwen2_vl"], device="cpu")
    records = make_records(tmp_path / "images", 3)
    options = [["red", "blue"], None, ["1", "2", "3"]]  # the middle question is open
    records = [dataclasses.replace(r, candidates=c) for r, c in zip(records, options)]
    settings = GenerationSettings(batch_size=3, max_new_tokens=3, decoding=decoding)
    rows = answer_batch(model, processor, records, settings)
    assert rows[0]["prediction"] in options[0] and rows[2]["prediction"] in options[2]
    if decoding == "likelihood":
        assert set(rows[0]["candidate_scores"]) == {"red", "blue"} and "candidate_scores" not in rows[1]
        best = max(rows[2]["candidate_scores"], key=rows[2]["candidate_scores"].get)
        assert rows[2]["prediction"] == best
