"""Qwen2.5-VL: a windowed-attention ViT with 2x2 patch merging, M-RoPE, and Qwen2.5-VL-Instruct's ChatML template."""

from __future__ import annotations

from typing import Any

from transformers import (
    PreTrainedModel,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessor,
)
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

from vlmflow.zoo.families.qwen2_vl import (
    QWEN2_VL_CHAT_TEMPLATE,
    QWEN2_VL_SPECIAL_TOKENS,
    mrope_sections,
    qwen_text_config,
    qwen_vl_tokenizer,
)
from vlmflow.zoo.tokenizer import train_bpe

# Qwen/Qwen2.5-VL-7B-Instruct's chat_template.json is Qwen2-VL-Instruct's (QWEN2_VL_CHAT_TEMPLATE).

PATCH_SIZE, MERGE_SIZE = 14, 2  # Qwen2.5-VL's: one visual token per 28x28 px


def build(spec: dict[str, Any], lines: list[str]) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Windowed ViT + 2x2 merger + Qwen2.5 LM; `image_size`² px gives (image_size/28)² visual tokens.

    The default vision window is half the image side (four windows per image when `image_size` is a
    multiple of 56), and the last vision block attends globally, as Qwen2.5-VL's
    `fullatt_block_indexes` blocks do; `window_size` / `fullatt_block_indexes` in `vision` override.
    """
    tokenizer = qwen_vl_tokenizer(train_bpe(lines, spec["vocab_size"], QWEN2_VL_SPECIAL_TOKENS))
    size = spec["image_size"]
    pixels = size**2
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            min_pixels=pixels, max_pixels=pixels, patch_size=PATCH_SIZE, merge_size=MERGE_SIZE
        ),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN2_VL_SPECIAL_TOKENS}
    text = dict(spec["text"])
    mrope = mrope_sections(text["hidden_size"] // text["num_attention_heads"])
    vision = {
        "patch_size": PATCH_SIZE,
        "spatial_merge_size": MERGE_SIZE,
        "out_hidden_size": text["hidden_size"],
        "window_size": max(size // 2, PATCH_SIZE * MERGE_SIZE),
        **spec["vision"],
    }
    vision.setdefault("fullatt_block_indexes", [vision.get("depth", 32) - 1])
    config = Qwen2_5_VLConfig(
        text_config=qwen_text_config(
            tokenizer, text, {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope}
        ),
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    return Qwen2_5_VLForConditionalGeneration(config), processor
