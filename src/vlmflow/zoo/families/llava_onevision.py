"""LLaVA-OneVision: SigLIP (no head), an MLP projector and Qwen2, with one anyres tile and llava-hf's template."""

from __future__ import annotations

from typing import Any

from transformers import (
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessor,
    LlavaOnevisionProcessor,
    LlavaOnevisionVideoProcessor,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    ProcessorMixin,
)

from vlmflow.zoo.families.qwen2_vl import qwen_text_config
from vlmflow.zoo.tokenizer import train_bpe

# llava-hf/llava-onevision-qwen2-0.5b-ov-hf's first chat template (as transformers'
# convert_llava_onevision_weights_to_hf.py writes it). The hub's current one renders the assistant
# turn as "assistant \n…" but the generation prompt as "assistant\n", so a prompt followed by an
# answer would not extend the prompt and answer-only training labels could not be built.
LLAVA_ONEVISION_CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>\n' }}{% endfor %}"
    "{# Render all text next #}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] }}{% endfor %}{{'<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

LLAVA_ONEVISION_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]

PATCH_SIZE = 28  # the tiny default (SigLIP's own is 14): a 56 px image is a 2x2 patch grid


def build(spec: dict[str, Any], lines: list[str]) -> tuple[PreTrainedModel, ProcessorMixin]:
    """SigLIP + 2-layer MLP projector + Qwen2, anyres with a single `image_size`² grid pinpoint.

    With p = image_size / patch_size, a square image gives p² base-image tokens, p² tokens of its one
    anyres tile and p image-newline tokens (p = 2: 10 tokens). An image of another aspect ratio has
    its tile unpadded, so it gives fewer tile and newline tokens, as in the real model.
    """
    tok = train_bpe(lines, spec["vocab_size"], LLAVA_ONEVISION_SPECIAL_TOKENS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
    )
    size = spec["image_size"]
    vision = {
        "model_type": "siglip_vision_model",
        "image_size": size,
        "patch_size": PATCH_SIZE,
        "vision_use_head": False,
        **spec["vision"],
    }
    num_image_tokens = (size // vision["patch_size"]) ** 2
    pinpoints = [[size, size]]  # one anyres tile, the size of the base image
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(
            size={"height": size, "width": size}, image_grid_pinpoints=pinpoints
        ),
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size={"height": size, "width": size}),
        num_image_tokens=num_image_tokens,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
        chat_template=LLAVA_ONEVISION_CHAT_TEMPLATE,
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in LLAVA_ONEVISION_SPECIAL_TOKENS}
    config = LlavaOnevisionConfig(
        vision_config=vision,
        text_config=qwen_text_config(
            tokenizer, spec["text"], {"rope_type": "default", "rope_theta": 1000000.0}, model_type="qwen2"
        ),
        image_token_index=ids["<image>"],
        video_token_index=ids["<video>"],
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=pinpoints,
        vision_aspect_ratio="anyres_max_9",
    )
    return LlavaOnevisionForConditionalGeneration(config), processor
