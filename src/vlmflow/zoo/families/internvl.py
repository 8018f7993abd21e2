"""InternVL3 (transformers-native `-hf` format): InternViT, pixel-shuffle MLP projector, Qwen2, and its ChatML template."""

from __future__ import annotations

from typing import Any

from transformers import (
    GotOcr2ImageProcessor,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLProcessor,
    InternVLVideoProcessor,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    ProcessorMixin,
)

from vlmflow.zoo.families.qwen2_vl import qwen_text_config
from vlmflow.zoo.tokenizer import train_bpe

# OpenGVLab/InternVL3-1B-hf's chat_template.jinja: ChatML, no default system turn, "<IMG_CONTEXT>\n" per
# image (the processor expands it to <img><IMG_CONTEXT>*n</img>).
INTERNVL_CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{'<|im_end|>\n'}}{% endfor %}{% if add_generation_prompt %}{{'<|im_start|>assistant\n' }}{% endif %}"
)

INTERNVL_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]

PATCH_SIZE = 14  # InternViT's
DOWNSAMPLE_RATIO = 0.5  # pixel shuffle: 2x2 patches -> one visual token


def build(spec: dict[str, Any], lines: list[str]) -> tuple[PreTrainedModel, ProcessorMixin]:
    """InternViT (CLS dropped) + pixel shuffle + MLP projector + Qwen2; (image_size/28)² visual tokens.

    Every image is resized to `image_size`² and never tiled (`crop_to_patches` off, one patch at most),
    so each gives <img>, the same number of <IMG_CONTEXT> tokens, and </img>.
    """
    tok = train_bpe(lines, spec["vocab_size"], INTERNVL_SPECIAL_TOKENS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
    )
    size = spec["image_size"]
    vision = {
        "image_size": size,
        "patch_size": PATCH_SIZE,
        "attention_bias": True,  # InternViT-300M's qkv bias
        **spec["vision"],
    }
    patch = vision["patch_size"]
    image_seq_length = int((size // patch) ** 2 * DOWNSAMPLE_RATIO**2)
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(
            size={"height": size, "width": size},
            crop_to_patches=False,
            min_patches=1,
            max_patches=1,  # InternVLProcessor passes crop_to_patches=True: one tile, no thumbnail, either way
            image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225],
        ),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(size={"height": size, "width": size}),
        image_seq_length=image_seq_length,
        chat_template=INTERNVL_CHAT_TEMPLATE,
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in INTERNVL_SPECIAL_TOKENS}
    config = InternVLConfig(
        vision_config=vision,
        text_config=qwen_text_config(
            tokenizer, spec["text"], {"rope_type": "default", "rope_theta": 1000000.0}, model_type="qwen2"
        ),
        image_token_id=ids["<IMG_CONTEXT>"],
        image_seq_length=image_seq_length,
        downsample_ratio=DOWNSAMPLE_RATIO,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    return InternVLForConditionalGeneration(config), processor
