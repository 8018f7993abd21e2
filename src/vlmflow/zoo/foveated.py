"""The tiny parts of the foveated VLM (seed 001): a DINOv2 encoder and a Llama-family causal LM.

The seed joins facebook/dinov2-small and SmolLM2-135M; the default builds the same two classes
from small configs and saves them as two checkpoints (`vision/`, `language/`), each loadable with
`AutoModel` / `AutoModelForCausalLM` like the downloaded ones, so `foveated_model.from_parts`
treats both alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import (
    BitImageProcessor,
    Dinov2Config,
    Dinov2Model,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from vlmflow.core.io import atomic_directory
from vlmflow.zoo.tokenizer import train_bpe

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# SmolLM2-Instruct's ChatML template, without its default system message.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def build_foveated_parts(spec: dict[str, Any], corpus_lines: list[str], out_dir: str | Path) -> None:
    """Write `out_dir/vision` (Dinov2Model + its image processor) and `out_dir/language`
    (LlamaForCausalLM + a BPE tokenizer trained on `corpus_lines`), seeded and atomic."""
    torch.manual_seed(spec.get("seed", 0))
    size = spec["image_size"]
    vision = Dinov2Model(Dinov2Config(image_size=size, patch_size=14, **spec["vision"]))
    processor = BitImageProcessor(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=train_bpe(corpus_lines, spec["vocab_size"], SPECIAL_TOKENS),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token="<|im_start|>",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    language = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            max_position_embeddings=512,
            bos_token_id=ids["<|im_start|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
            **spec["text"],
        )
    )
    with atomic_directory(out_dir) as tmp:
        save_parts(vision, processor, language, tokenizer, tmp)


def save_parts(
    vision: Dinov2Model,
    processor: BitImageProcessor,
    language: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    folder: Path,
) -> None:
    """`folder/vision` (the encoder and its image processor) and `folder/language` (the causal LM
    and its tokenizer): the two folders `from_parts` loads. The caller makes `folder` atomic."""
    vision.save_pretrained(folder / "vision")
    processor.save_pretrained(folder / "vision")
    language.save_pretrained(folder / "language")
    tokenizer.save_pretrained(folder / "language")
