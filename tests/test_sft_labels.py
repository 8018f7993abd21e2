"""Answer-only labels: decoding the supervised positions gives exactly answer + end-of-turn."""

from __future__ import annotations

import pytest
from conftest import TINY_SPECS, make_records
from transformers import AutoConfig, AutoProcessor

from vlmflow.architectures.registry import architecture_of
from vlmflow.core.prompts import build_messages
from vlmflow.core.settings import GenerationSettings
from vlmflow.finetune.examples import IGNORE_INDEX, collate, label_report

END_OF_TURN = {"qwen2_vl": "<|im_end|>", "llava": "</s>"}
SETTINGS = GenerationSettings(
    system_prompt="You are a careful VQA assistant.", prompt="Question type: color\nQuestion: {question}"
)


@pytest.mark.parametrize("family", sorted(TINY_SPECS))
def test_supervised_positions_decode_to_answer_and_end_of_turn(family, tiny_checkpoints, tmp_path):
    processor = AutoProcessor.from_pretrained(tiny_checkpoints[family])
    records = make_records(tmp_path, 4)
    batch = collate(architecture_of(AutoConfig.from_pretrained(tiny_checkpoints[family])), processor, records, SETTINGS)
    for row, report in enumerate(label_report(processor, batch, [r.question_id for r in records])):
        answer = records[row].answers[0]
        expected = answer + END_OF_TURN[family] if family == "qwen2_vl" else f" {answer}{END_OF_TURN[family]}"
        assert report["supervised_text"] == expected
        positions = report["supervised_positions"]
        assert positions == list(range(positions[0], report["sequence_length"])), "one contiguous span at the end"
        assert report["mask_ratio"] > 0.5
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all(), "padding is never supervised"


@pytest.mark.parametrize("family", sorted(TINY_SPECS))
def test_training_sequence_starts_with_the_inference_prompt(family, tiny_checkpoints, tmp_path):
    """No marker text: the tokens before the answer are exactly what inference feeds the model."""
    processor = AutoProcessor.from_pretrained(tiny_checkpoints[family])
    record = make_records(tmp_path, 1)[0]
    batch = collate(
        architecture_of(AutoConfig.from_pretrained(tiny_checkpoints[family])), processor, [record], SETTINGS
    )
    prompt = processor.apply_chat_template(
        build_messages(record.question, SETTINGS), add_generation_prompt=True, tokenize=False
    )
    from PIL import Image

    inference = processor(text=[prompt], images=[Image.open(record.image).convert("RGB")], return_tensors="pt")
    n = inference["input_ids"].shape[1]
    assert batch["input_ids"][0, :n].tolist() == inference["input_ids"][0].tolist()
    assert (batch["labels"][0, :n] == IGNORE_INDEX).all()
    assert "You are a careful VQA assistant." in prompt and "Question type: color" in prompt


def test_training_answer_is_the_normalised_consensus():
    from vlmflow.core.records import Record
    from vlmflow.finetune.examples import training_answer

    answers = ["the green", "Green", "green.", "GREEN", "green", "green", "blue", "the green", "Green", "green"]
    assert training_answer(Record("1", "x.jpg", "q", answers, "d")) == "green"
    assert training_answer(Record("2", "x.jpg", "q", ["pink; red"], "d")) == "pink; red"
