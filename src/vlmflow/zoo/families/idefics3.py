"""Idefics3: a SigLIP-style ViT, a pixel-shuffle connector and Llama 3, with Idefics3-8B-Llama3's chat template."""

from __future__ import annotations

from typing import Any

from transformers import (
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessor,
    Idefics3Processor,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    ProcessorMixin,
)

from vlmflow.zoo.tokenizer import train_bpe

# HuggingFaceM4/Idefics3-8B-Llama3's chat template ("<|begin_of_text|>User:<image>...<end_of_utterance>\nAssistant:").
IDEFICS3_CHAT_TEMPLATE = (
    "<|begin_of_text|>{% for message in messages %}{{message['role'].capitalize()}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

# Llama 3's begin / end of text and its first reserved token (id 128002, Idefics3's padding), then the
# image-wrapping tokens the processor looks up. Images are never split into tiles, so the
# `<row_i_col_j>` tile tokens never occur and are left out of the small vocabulary.
IDEFICS3_SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<fake_token_around_image>",
    "<image>",
    "<global-img>",
    "<end_of_utterance>",
]

# The tokenizer attributes Idefics3Processor (and SmolVLMProcessor) look the image tokens up by.
IMAGE_TOKENS = {
    "fake_image_token": "<fake_token_around_image>",
    "image_token": "<image>",
    "global_image_token": "<global-img>",
    "end_of_utterance_token": "<end_of_utterance>",
}

PATCH_SIZE = 14  # SigLIP so400m-patch14, as in Idefics3-8B
SCALE_FACTOR = 2  # pixel shuffle: 2x2 patches become one visual token


def image_seq_len(image_size: int, patch_size: int, scale_factor: int) -> int:
    """Visual tokens per image: (image_size/patch_size)² patches, pixel-shuffled by scale_factor²."""
    side = image_size // patch_size
    if image_size % patch_size or side % scale_factor:
        raise ValueError(
            f"image_size {image_size} must be a multiple of patch_size {patch_size} times scale_factor {scale_factor}"
        )
    return (side // scale_factor) ** 2


def build(spec: dict[str, Any], lines: list[str]) -> tuple[PreTrainedModel, ProcessorMixin]:
    """ViT + pixel shuffle + Llama; one unsplit `image_size`² px image gives (image_size/14/2)² visual tokens."""
    tok = train_bpe(lines, spec["vocab_size"], IDEFICS3_SPECIAL_TOKENS, bos_token="<|begin_of_text|>")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin_of_text|>",
        eos_token="<end_of_utterance>",
        pad_token="<|reserved_special_token_0|>",
        extra_special_tokens=IMAGE_TOKENS,
    )
    size = spec["image_size"]
    scale = spec.get("scale_factor", SCALE_FACTOR)
    vision = {"patch_size": PATCH_SIZE, "image_size": size, **spec["vision"]}
    seq_len = image_seq_len(size, vision["patch_size"], scale)
    # No tiling: each image is resized to image_size on its longest edge, then squared to image_size.
    image_processor = Idefics3ImageProcessor(
        do_image_splitting=False, size={"longest_edge": size}, max_image_size={"longest_edge": size}
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=seq_len,
        chat_template=IDEFICS3_CHAT_TEMPLATE,
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in IDEFICS3_SPECIAL_TOKENS}
    config = Idefics3Config(
        vision_config=vision,
        text_config={
            "model_type": "llama",
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-5,
            "bos_token_id": ids["<|begin_of_text|>"],
            "eos_token_id": ids["<end_of_utterance>"],
            "pad_token_id": ids["<|reserved_special_token_0|>"],
            **spec["text"],
        },
        scale_factor=scale,
        image_token_id=ids["<image>"],
        pad_token_id=ids["<|reserved_special_token_0|>"],
    )
    return Idefics3ForConditionalGeneration(config), processor
