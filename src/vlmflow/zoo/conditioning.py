"""The tiny parts of the VL-conditioning study (seed 003): a Z-Image pipeline and a Qwen3-VL.

Z-Image (diffusers' `ZImagePipeline`) conditions its diffusion transformer on Qwen3-4B's
`hidden_states[-2]`; the seed swaps in Qwen3-VL-4B, whose language model has the same width and
grew out of Qwen3. `build_conditioning_models` builds the same classes from small configs, with
random weights:

- `pipeline/`: `ZImagePipeline` with a `ZImageTransformer2DModel`, an `AutoencoderKL` (16 latent
  channels, Z-Image's scaling and shift factors), a `FlowMatchEulerDiscreteScheduler` and, as its
  text encoder, a `Qwen3ForCausalLM` with a byte-level BPE tokenizer and a Qwen3 chat template;
- `vlm/`: `Qwen3VLForConditionalGeneration` + `Qwen3VLProcessor` sharing that tokenizer, whose
  language model starts as a copy of the text encoder (as Qwen3-VL's starts from Qwen3), so its
  text tokens track the reference encoder and its image tokens do not.

Both load exactly as the downloaded checkpoints do (`ZImagePipeline.from_pretrained`,
`AutoModelForImageTextToText` / `AutoProcessor`). `make pretrain` trains every part from this build
(`vlmflow.conditioning.pretrain`) into the zoo the default uses; the tests use the random build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    ZImagePipeline,
    ZImageTransformer2DModel,
)
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2VLImageProcessor,
    Qwen3Config,
    Qwen3ForCausalLM,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
)
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

from vlmflow.core.io import atomic_directory
from vlmflow.zoo.families.qwen2_vl import mrope_sections, qwen_vl_tokenizer
from vlmflow.zoo.tokenizer import train_bpe

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<think>",
    "</think>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# The Qwen3 / Qwen3-VL ChatML template, cut to what the study uses: string or image + text content,
# and Qwen3's empty think block when `enable_thinking=False` (Z-Image passes True: no block).
QWEN3_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)
ROPE_THETA = 1e6  # Qwen3's and Qwen3-VL's: the VLM reads a text-only prompt as the encoder does
# Z-Image's VAE is FLUX's: 16 latent channels, these latent scale and shift factors.
ZIMAGE_VAE_SCALING, ZIMAGE_VAE_SHIFT = 0.3611, 0.1159


def qwen3_tokenizer(corpus_lines: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE with Qwen3's special tokens and chat template, usable by a Qwen3-VL processor."""
    tokenizer = qwen_vl_tokenizer(train_bpe(corpus_lines, vocab_size, SPECIAL_TOKENS))
    tokenizer.chat_template = QWEN3_CHAT_TEMPLATE
    return tokenizer


def build_conditioning_models(spec: dict[str, Any], corpus_lines: list[str], out_dir: str | Path) -> None:
    """Write `out_dir/pipeline` (a ZImagePipeline folder) and `out_dir/vlm` (Qwen3-VL + processor),
    seeded from `spec` and written atomically."""
    torch.manual_seed(spec.get("seed", 0))
    tokenizer = qwen3_tokenizer(corpus_lines, spec["vocab_size"])
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = dict(spec["text"])
    token_ids = {
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    rope = {"rope_type": "default", "rope_theta": ROPE_THETA}
    encoder = Qwen3ForCausalLM(
        Qwen3Config(
            vocab_size=len(tokenizer),
            max_position_embeddings=1024,
            rope_parameters=rope,
            **token_ids,
            **text,
        )
    )

    mrope = mrope_sections(text["head_dim"])  # Qwen3-VL interleaves the sections
    vlm = Qwen3VLForConditionalGeneration(
        Qwen3VLConfig(
            text_config={
                "vocab_size": len(tokenizer),
                "max_position_embeddings": 1024,
                "rope_parameters": {**rope, "mrope_section": mrope, "mrope_interleaved": True},
                **token_ids,
                **text,
            },
            vision_config={
                "patch_size": 16,
                "spatial_merge_size": 2,
                "out_hidden_size": text["hidden_size"],
                **spec["vision"],
            },
            image_token_id=ids["<|image_pad|>"],
            video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"],
            vision_end_token_id=ids["<|vision_end|>"],
        )
    )
    vlm.model.language_model.load_state_dict(encoder.model.state_dict())
    vlm.lm_head.load_state_dict(encoder.lm_head.state_dict())
    vlm.generation_config.eos_token_id = tokenizer.eos_token_id
    vlm.generation_config.pad_token_id = tokenizer.pad_token_id
    pixels = spec["image_size"] ** 2
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels, patch_size=16, merge_size=2),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(),
        chat_template=QWEN3_CHAT_TEMPLATE,
    )

    transformer = ZImageTransformer2DModel(in_channels=16, cap_feat_dim=text["hidden_size"], **spec["transformer"])
    vae_spec = dict(spec["vae"])
    depth = len(vae_spec["block_out_channels"])
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * depth,
        up_block_types=("UpDecoderBlock2D",) * depth,
        latent_channels=16,
        scaling_factor=ZIMAGE_VAE_SCALING,
        shift_factor=ZIMAGE_VAE_SHIFT,
        use_quant_conv=False,
        use_post_quant_conv=False,
        **vae_spec,
    )
    pipeline = ZImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),  # Z-Image-Turbo's scheduler shift
        vae=vae,
        text_encoder=encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )
    with atomic_directory(out_dir) as tmp:
        pipeline.save_pretrained(tmp / "pipeline")
        vlm.save_pretrained(tmp / "vlm")
        processor.save_pretrained(tmp / "vlm")
