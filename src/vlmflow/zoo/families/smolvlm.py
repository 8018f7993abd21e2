"""SmolVLM: a SigLIP-style ViT, a pixel-shuffle connector and SmolLM2 (Llama), with SmolVLM's chat template."""

from __future__ import annotations

from typing import Any

from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerFast,
    ProcessorMixin,
    SmolVLMConfig,
    SmolVLMForConditionalGeneration,
    SmolVLMImageProcessor,
    SmolVLMProcessor,
)
from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

from vlmflow.zoo.families.idefics3 import IMAGE_TOKENS, image_seq_len
from vlmflow.zoo.tokenizer import train_bpe

# HuggingFaceTB/SmolVLM-256M-Instruct's chat template ("<|im_start|>User:<image>...<end_of_utterance>\nAssistant:");
# SmolVLM2 ships the same one, and SmolVLMProcessor swaps in its video-aware twin when a message holds a video.
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

# SmolLM2's text / ChatML tokens, then the image-wrapping tokens the processor looks up by name.
# Images are never split into tiles, so the `<row_i_col_j>` tile tokens never occur and are left out.
SMOLVLM_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<fake_token_around_image>",
    "<image>",
    "<global-img>",
    "<end_of_utterance>",
]

PATCH_SIZE = 16  # SmolVLM-256M / -500M: SigLIP base-patch16 at 512 px
SCALE_FACTOR = 4  # pixel shuffle: 4x4 patches become one visual token, as in SmolVLM-256M / -500M


def build(spec: dict[str, Any], lines: list[str]) -> tuple[PreTrainedModel, ProcessorMixin]:
    """ViT + pixel shuffle + Llama; one unsplit `image_size`² px image gives (image_size/16/4)² visual tokens."""
    tok = train_bpe(lines, spec["vocab_size"], SMOLVLM_SPECIAL_TOKENS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        extra_special_tokens=IMAGE_TOKENS,
    )
    size = spec["image_size"]
    scale = spec.get("scale_factor", SCALE_FACTOR)
    vision = {"patch_size": PATCH_SIZE, "image_size": size, **spec["vision"]}
    seq_len = image_seq_len(size, vision["patch_size"], scale)
    # No tiling: each image (and video frame) is resized to image_size on its longest edge, then squared.
    edge = {"longest_edge": size}
    processor = SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(do_image_splitting=False, size=edge, max_image_size=edge),
        tokenizer=tokenizer,
        video_processor=SmolVLMVideoProcessor(
            size=edge, max_image_size=edge, video_sampling={"fps": 1, "max_frames": 8, "video_size": edge}
        ),
        image_seq_len=seq_len,
        chat_template=SMOLVLM_CHAT_TEMPLATE,
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SMOLVLM_SPECIAL_TOKENS}
    config = SmolVLMConfig(
        vision_config=vision,
        text_config={
            "model_type": "llama",
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-5,
            "bos_token_id": ids["<|im_start|>"],
            "eos_token_id": ids["<end_of_utterance>"],
            "pad_token_id": ids["<|im_end|>"],
            **spec["text"],
        },
        scale_factor=scale,
        image_token_id=ids["<image>"],
        pad_token_id=ids["<|im_end|>"],
    )
    return SmolVLMForConditionalGeneration(config), processor
