"""Gemma 3: a SigLIP ViT, average pooling to a few soft tokens and Gemma 3, with gemma-3-4b-it's chat template."""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3ImageProcessor,
    Gemma3Processor,
    Gemma3TextConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    ProcessorMixin,
    SiglipVisionConfig,
)

from vlmflow.zoo.tokenizer import train_bpe

# google/gemma-3-4b-it's chat template (tokenizer_config.json / chat_template.json).
GEMMA3_CHAT_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

# Gemma's specials in Gemma's order (pad 0, eos 1, bos 2, unk 3), then the turn and image tokens.
GEMMA3_SPECIAL_TOKENS = [
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
]

PATCH_SIZE = 14  # SigLIP so400m-patch14, as in Gemma 3
SLIDING_WINDOW = 512  # longer than any tiny prompt: sliding and full layers see the same tokens
SLIDING_WINDOW_PATTERN = 2  # every 2nd layer is full attention (Gemma 3: every 6th)


def tokens_per_image(image_size: int, patch_size: int, mm_tokens_per_image: int | None) -> int:
    """Soft tokens per image: the (image_size/patch_size)² patches average-pooled to a square grid
    (by default 2x2 patches per token; Gemma 3 pools 4x4)."""
    side = image_size // patch_size
    if mm_tokens_per_image is None:
        mm_tokens_per_image = (side // 2) ** 2
    tokens_side = round(mm_tokens_per_image**0.5)
    if image_size % patch_size or tokens_side**2 != mm_tokens_per_image or side % tokens_side:
        raise ValueError(
            f"mm_tokens_per_image {mm_tokens_per_image} must be a square whose side divides the "
            f"{side}x{side} patches of image_size {image_size} / patch_size {patch_size}"
        )
    return mm_tokens_per_image


def build(spec: dict[str, Any], lines: list[str]) -> tuple[PreTrainedModel, ProcessorMixin]:
    """SigLIP + avg-pool projector + Gemma 3 (sliding and full layers); `image_size`² px gives
    `mm_tokens_per_image` soft tokens ((image_size/14/2)² by default)."""
    tok = train_bpe(lines, spec["vocab_size"], GEMMA3_SPECIAL_TOKENS, bos_token="<bos>")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<end_of_turn>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    size = spec["image_size"]
    vision = {"patch_size": PATCH_SIZE, "image_size": size, "vision_use_head": False, **spec["vision"]}
    n_tokens = tokens_per_image(size, vision["patch_size"], spec.get("mm_tokens_per_image"))
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessor(size={"height": size, "width": size}, do_pan_and_scan=False),
        tokenizer=tokenizer,
        chat_template=GEMMA3_CHAT_TEMPLATE,
        image_seq_length=n_tokens,
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in GEMMA3_SPECIAL_TOKENS}
    text = dict(spec["text"])
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    layer_types = [
        "full_attention" if (i + 1) % SLIDING_WINDOW_PATTERN == 0 else "sliding_attention"
        for i in range(text["num_hidden_layers"])
    ]
    config = Gemma3Config(
        text_config=Gemma3TextConfig(
            vocab_size=len(tokenizer),
            head_dim=head_dim,
            query_pre_attn_scalar=head_dim,
            sliding_window=SLIDING_WINDOW,
            layer_types=layer_types,
            max_position_embeddings=4096,
            bos_token_id=ids["<bos>"],
            eos_token_id=ids["<end_of_turn>"],
            pad_token_id=ids["<pad>"],
            **text,
        ),
        vision_config=SiglipVisionConfig(**vision),
        mm_tokens_per_image=n_tokens,
        boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"],
        image_token_index=ids["<image_soft_token>"],
    )
    model = Gemma3ForConditionalGeneration(config)
    # Gemma 3 initialises the image projection to zeros, which would make a random model blind:
    # draw it like the other weights so that images change the logits.
    with torch.no_grad():
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(std=config.initializer_range)
    return model, processor
