"""Qwen2-VL: a ViT with 2x2 patch merging, M-RoPE, and Qwen2-VL-Instruct's ChatML template."""

from __future__ import annotations

from typing import Any

from tokenizers import Tokenizer
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerFast,
    ProcessorMixin,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
)
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

from vlmflow.zoo.tokenizer import train_bpe

# Qwen2-VL-Instruct's chat template, as shipped in its chat_template.json.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

QWEN2_VL_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def qwen_vl_tokenizer(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """A trained BPE wrapped the way Qwen2-VL / Qwen3-VL tokenizers are: ChatML end and padding
    tokens, and the vision tokens a Qwen-VL processor looks up by name."""
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_bos_token": "<|vision_start|>",
            "vision_eos_token": "<|vision_end|>",
        },
    )


def mrope_sections(head_dim: int) -> list[int]:
    """M-RoPE's split of the rotary half-dimension into temporal / height / width sections."""
    half = head_dim // 2
    return [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]


def qwen_text_config(
    tokenizer: PreTrainedTokenizerFast, text: dict[str, Any], rope_parameters: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    """A Qwen2 / Qwen3 language model's config over a ChatML tokenizer (<|endoftext|> begins and pads,
    <|im_end|> ends a turn), with the spec's `text` overrides last; its `rope_parameters` update the
    family's (a tiny grid wants a small `rope_theta`, see docs/pretraining.md)."""
    ids = tokenizer.convert_tokens_to_ids
    return {
        **fields,
        "vocab_size": len(tokenizer),
        "max_position_embeddings": 4096,
        "bos_token_id": ids("<|endoftext|>"),
        "eos_token_id": ids("<|im_end|>"),
        "pad_token_id": ids("<|endoftext|>"),
        **text,
        "rope_parameters": {**rope_parameters, **text.get("rope_parameters", {})},
    }


def build(spec: dict[str, Any], lines: list[str]) -> tuple[PreTrainedModel, ProcessorMixin]:
    """ViT with 2x2 patch merging; `image_size`² px gives (image_size/28)² visual tokens."""
    tokenizer = qwen_vl_tokenizer(train_bpe(lines, spec["vocab_size"], QWEN2_VL_SPECIAL_TOKENS))
    pixels = spec["image_size"] ** 2
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN2_VL_SPECIAL_TOKENS}
    text = dict(spec["text"])
    mrope = mrope_sections(text["hidden_size"] // text["num_attention_heads"])
    config = Qwen2VLConfig(
        text_config=qwen_text_config(
            tokenizer, text, {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope}
        ),
        vision_config={"hidden_size": text["hidden_size"], "patch_size": 14, "spatial_merge_size": 2, **spec["vision"]},
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    return Qwen2VLForConditionalGeneration(config), processor
