"""PaliGemma: a SigLIP ViT, a linear projector and Gemma as a prefix LM; no chat template, like paligemma-3b-pt."""

from __future__ import annotations

from typing import Any

from transformers import (
    GemmaConfig,
    PaliGemmaConfig,
    PaliGemmaForConditionalGeneration,
    PaliGemmaProcessor,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    ProcessorMixin,
    SiglipImageProcessor,
    SiglipVisionConfig,
)

from vlmflow.zoo.tokenizer import train_bpe

# Gemma's specials in Gemma's order (pad 0, eos 1, bos 2, unk 3), then the image placeholder. The
# processor itself appends PaliGemma's 1024 `<locNNNN>` and 128 `<segNNN>` tokens.
PALIGEMMA_SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<image>"]

PATCH_SIZE = 14  # SigLIP so400m-patch14, as in paligemma-3b-pt-224


def build(spec: dict[str, Any], lines: list[str]) -> tuple[PreTrainedModel, ProcessorMixin]:
    """SigLIP + linear projector + Gemma; `image_size`² px gives (image_size/14)² visual tokens.

    The processor builds the prompt itself: `<image>`*N + `<bos>` + prefix + `\\n`, with no chat template."""
    tok = train_bpe(lines, spec["vocab_size"], PALIGEMMA_SPECIAL_TOKENS, bos_token="<bos>")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )
    size = spec["image_size"]
    vision = {"patch_size": PATCH_SIZE, "image_size": size, "vision_use_head": False, **spec["vision"]}
    if size % vision["patch_size"]:
        raise ValueError(f"image_size {size} must be a multiple of patch_size {vision['patch_size']}")
    image_processor = SiglipImageProcessor(
        size={"height": size, "width": size}, image_seq_length=(size // vision["patch_size"]) ** 2
    )
    # The processor adds the <loc>/<seg> tokens and turns the tokenizer's own <bos> off (it writes one).
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in PALIGEMMA_SPECIAL_TOKENS}
    text = dict(spec["text"])
    config = PaliGemmaConfig(
        vision_config=SiglipVisionConfig(**vision),
        text_config=GemmaConfig(
            vocab_size=len(tokenizer),
            head_dim=text["hidden_size"] // text["num_attention_heads"],
            max_position_embeddings=4096,
            bos_token_id=ids["<bos>"],
            eos_token_id=ids["<eos>"],
            pad_token_id=ids["<pad>"],
            **text,
        ),
        image_token_index=ids["<image>"],
        vocab_size=len(tokenizer),
        projection_dim=text["hidden_size"],
        hidden_size=text["hidden_size"],
    )
    return PaliGemmaForConditionalGeneration(config), processor
