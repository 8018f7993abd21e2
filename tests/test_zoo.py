"""The tiny zoo: real architectures that reload through the Auto classes, built reproducibly."""

from __future__ import annotations

import pytest
import torch
from conftest import CORPUS, FAMILY_SPECS, TINY_SPECS, make_records
from transformers import AutoModelForImageTextToText, AutoProcessor

from vlmflow.core.models import load_vlm
from vlmflow.core.settings import GenerationSettings
from vlmflow.vqa.inference import generate_batch
from vlmflow.zoo.build import FAMILIES, build_checkpoint

EXPECTED_CLASSES = {
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "internvl": "InternVLForConditionalGeneration",
    "idefics3": "Idefics3ForConditionalGeneration",
    "smolvlm": "SmolVLMForConditionalGeneration",
    "llava": "LlavaForConditionalGeneration",
    "llava_onevision": "LlavaOnevisionForConditionalGeneration",
    "gemma3": "Gemma3ForConditionalGeneration",
    "paligemma": "PaliGemmaForConditionalGeneration",
}


def test_every_family_is_registered():
    assert set(EXPECTED_CLASSES) == set(FAMILIES) == set(FAMILY_SPECS)


@pytest.mark.parametrize("family", sorted(FAMILY_SPECS))
def test_checkpoint_reloads_through_auto_classes_and_generates(family, family_checkpoints, tmp_path):
    path = family_checkpoints[family]
    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)
    assert type(model).__name__ == EXPECTED_CLASSES[family]
    assert (path / "model.safetensors").is_file()
    assert bool(processor.chat_template) == (family != "paligemma"), "the family's chat template (PaliGemma has none)"

    model, processor = load_vlm(path, device="cpu")
    records = make_records(tmp_path / "images", 3)
    template = "answer en {question}" if family == "paligemma" else None
    settings = GenerationSettings(batch_size=3, max_new_tokens=4, prompt_template=template)
    outputs = generate_batch(model, processor, records, settings)
    assert len(outputs) == 3 and all(isinstance(text, str) for text in outputs)


@pytest.mark.parametrize("family", sorted(TINY_SPECS))
def test_prompt_uses_the_family_chat_template(family, tiny_checkpoints):
    processor = AutoProcessor.from_pretrained(tiny_checkpoints[family])
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What color?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    if family == "qwen2_vl":
        assert text.endswith(
            "<|vision_start|><|image_pad|><|vision_end|>What color?<|im_end|>\n<|im_start|>assistant\n"
        )
    else:
        assert text == "USER: <image>\nWhat color? ASSISTANT:"


# How each family's hub chat template renders an image + question turn and the generation prompt.
RENDERED = {
    "qwen2_5_vl": "<|vision_start|><|image_pad|><|vision_end|>What color?<|im_end|>\n<|im_start|>assistant\n",
    "qwen3_vl": "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What color?<|im_end|>\n"
    "<|im_start|>assistant\n",
    "internvl": "<|im_start|>user\n<IMG_CONTEXT>\nWhat color?<|im_end|>\n<|im_start|>assistant\n",
    "idefics3": "<|begin_of_text|>User:<image>What color?<end_of_utterance>\nAssistant:",
    "smolvlm": "<|im_start|>User:<image>What color?<end_of_utterance>\nAssistant:",
    "llava_onevision": "<|im_start|>user\n<image>\nWhat color?<|im_end|>\n<|im_start|>assistant\n",
    "gemma3": "<bos><start_of_turn>user\n<start_of_image>What color?<end_of_turn>\n<start_of_turn>model\n",
}


@pytest.mark.parametrize("family", sorted(RENDERED))
def test_each_family_renders_its_hub_chat_template(family, family_checkpoints):
    processor = AutoProcessor.from_pretrained(family_checkpoints[family])
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What color?"}]}]
    assert processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False).endswith(
        RENDERED[family]
    )


def test_tokenizer_round_trips_arbitrary_text(tiny_checkpoints):
    tokenizer = AutoProcessor.from_pretrained(tiny_checkpoints["qwen2_vl"]).tokenizer
    text = "Ünïcode, digits 12-20mm; and words never seen: zebra!"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


@pytest.mark.parametrize("family", sorted(FAMILY_SPECS))
def test_same_spec_gives_byte_identical_checkpoints(family, tmp_path):
    spec = FAMILY_SPECS[family]
    build_checkpoint(spec, CORPUS, tmp_path / "a")
    build_checkpoint(spec, CORPUS, tmp_path / "b")
    for name in ("model.safetensors", "tokenizer.json", "config.json", "processor_config.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    build_checkpoint({**spec, "seed": 1}, CORPUS, tmp_path / "c")
    assert (tmp_path / "a" / "model.safetensors").read_bytes() != (tmp_path / "c" / "model.safetensors").read_bytes()


def test_visual_token_count_follows_image_size(tiny_checkpoints, tmp_path):
    """56 px with 14 px patches merged 2x2 gives 4 visual tokens in Qwen2-VL."""
    processor = AutoProcessor.from_pretrained(tiny_checkpoints["qwen2_vl"])
    record = make_records(tmp_path, 1)[0]
    from PIL import Image

    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "x"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[Image.open(record.image)], return_tensors="pt")
    image_token = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((inputs["input_ids"] == image_token).sum()) == 4


def test_unknown_family_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown model family 'blip'"):
        build_checkpoint({**TINY_SPECS["qwen2_vl"], "family": "blip"}, CORPUS, tmp_path / "x")


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a model checkpoint"):
        load_vlm(tmp_path / "nowhere")


def test_device_choice_is_cpu_fp32_without_cuda():
    from vlmflow.core.models import pick_device

    if not torch.cuda.is_available():
        assert pick_device() == (torch.device("cpu"), torch.float32)
    assert pick_device("cpu") == (torch.device("cpu"), torch.float32)
