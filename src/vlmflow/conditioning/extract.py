"""Hidden states to condition a diffusion transformer on (seed 003, VL conditioning).

Two encoders give (tokens, dim) tensors of the same width:

- the reference text encoder, read the way diffusers' `ZImagePipeline._encode_prompt` reads
  Qwen3-4B: the prompt as one user message through the chat template (`enable_thinking=True`),
  padded to `max_length`, one layer's hidden states (Z-Image: -2), the padding positions dropped;
- a VLM, for a text with or without a reference image (image first, then the text, in one user
  message through its chat template), one layer (negative indices count from the last), then a
  token selection: `full`, `image_only` (the positions the processor's `mm_token_type_ids` marks
  as image) or `text_only` (every other position: the template, the text and the vision
  start/end markers).
"""

from __future__ import annotations

import torch
from PIL import Image
from transformers import PreTrainedModel, PreTrainedTokenizerBase, ProcessorMixin

TOKEN_SELECTIONS = ("full", "image_only", "text_only")
IMAGE_TOKEN_TYPE = 1


def hidden_layer(hidden_states: tuple[torch.Tensor, ...], layer: int) -> torch.Tensor:
    """`hidden_states[layer]` (embeddings first, then each decoder layer), with an error naming
    the valid range instead of an IndexError."""
    n = len(hidden_states)
    if not -n <= layer < n:
        raise ValueError(f"hidden layer {layer} out of range: this model has {n} hidden states ({-n}..{n - 1})")
    return hidden_states[layer]


@torch.no_grad()
def reference_hidden_states(
    text_encoder: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    layer: int = -2,
    max_length: int = 512,
) -> torch.Tensor:
    """The reference encoder's (tokens, dim) states for `prompt`, unpadded, as Z-Image computes them."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=True,
    )
    inputs = tokenizer(text, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
    inputs = inputs.to(text_encoder.device)
    mask = inputs.attention_mask.bool()
    out = text_encoder(input_ids=inputs.input_ids, attention_mask=mask, output_hidden_states=True)
    return hidden_layer(out.hidden_states, layer)[0][mask[0]]


def vl_messages(text: str, with_image: bool) -> list[dict]:
    """One user message: the image first (as the seed puts the reference image), then the text;
    an empty text is left out, so `image_only` extraction of a text-free prompt is possible."""
    content = [{"type": "image"}] if with_image else []
    content += [{"type": "text", "text": text}] if text else []
    if not content:
        raise ValueError("a VL prompt needs a text, an image or both")
    return [{"role": "user", "content": content}]


def select_tokens(hidden: torch.Tensor, token_types: torch.Tensor, selection: str) -> torch.Tensor:
    """Rows of a (tokens, dim) tensor by the processor's token types (1 = image)."""
    if selection not in TOKEN_SELECTIONS:
        raise ValueError(f"token selection must be one of {TOKEN_SELECTIONS}, got {selection!r}")
    if selection == "full":
        return hidden
    keep = token_types == IMAGE_TOKEN_TYPE if selection == "image_only" else token_types != IMAGE_TOKEN_TYPE
    if not keep.any():
        raise ValueError(f"token selection {selection!r} keeps no tokens of this prompt")
    return hidden[keep]


@torch.no_grad()
def vl_forward(
    model: PreTrainedModel, processor: ProcessorMixin, text: str, image: Image.Image | None
) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """Every layer's (tokens, dim) states of the VLM for `text` (+ `image`) and the processor's
    token types (1 = image), so any layer and selection can be read from one forward pass."""
    prompt = processor.apply_chat_template(
        vl_messages(text, image is not None), tokenize=False, add_generation_prompt=True
    )
    inputs = processor(
        text=[prompt],
        images=[image] if image is not None else None,
        return_tensors="pt",
        return_mm_token_type_ids=True,
    ).to(model.device)
    out = model(**inputs, output_hidden_states=True)
    return tuple(h[0] for h in out.hidden_states), inputs["mm_token_type_ids"][0]
