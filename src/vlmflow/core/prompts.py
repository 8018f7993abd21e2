"""Chat prompts for every stage: a record's question as the processor's chat, encoded with its image.

Inference, fine-tuning, pruning and probing all ask the model the same way, so they share these: the
sequence trained on is exactly the inference-time prompt followed by the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from transformers import BatchFeature, PreTrainedModel, ProcessorMixin

from vlmflow.architectures.base import Architecture
from vlmflow.architectures.registry import architecture
from vlmflow.core.errors import InputError
from vlmflow.core.placement import input_device
from vlmflow.core.records import Record
from vlmflow.core.settings import GenerationSettings


def build_messages(question: str, settings: GenerationSettings, text: str | None = None) -> list[dict[str, Any]]:
    """A chat in the processor's own format: optional system turn, user turn with image + text
    (`text`, or the settings' prompt with the question filled in)."""
    messages: list[dict[str, Any]] = []
    if settings.system_prompt:
        messages.append({"role": "system", "content": [{"type": "text", "text": settings.system_prompt}]})
    text = settings.prompt.format(question=question) if text is None else text
    messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]})
    return messages


def render_prompt(
    processor: ProcessorMixin, question: str, settings: GenerationSettings, text: str | None = None
) -> str:
    """The text handed to the processor: the chat with the generation prompt, or with
    `settings.prompt_template` the raw prompt (for processors without a chat template)."""
    if settings.prompt_template is not None:
        return settings.prompt_template.format(question=question if text is None else text)
    if not getattr(processor, "chat_template", None):
        raise ValueError(
            f"{type(processor).__name__} has no chat template: set generation.prompt_template "
            "(e.g. PaliGemma's 'answer en {question}')"
        )
    return processor.apply_chat_template(
        build_messages(question, settings, text), add_generation_prompt=True, tokenize=False
    )


def processor_batch(
    arch: Architecture, processor: ProcessorMixin, texts: Sequence[str], images: Sequence[Image.Image], side: str
) -> BatchFeature:
    """Texts padded on `side` (given explicitly: some processors default to left) with one image
    each, passed as the model's family takes them. A chat template that writes the BOS itself
    (Idefics3, Gemma3) is not given a second one by the tokenizer."""
    bos = processor.tokenizer.bos_token
    own_bos = bos is not None and all(text.startswith(bos) for text in texts)
    return processor(
        text=list(texts),
        images=arch.processor_images(images),
        padding=True,
        padding_side=side,
        add_special_tokens=not own_bos,
        return_tensors="pt",
    )


def processor_inputs(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    texts: Sequence[str],
    images: Sequence[Image.Image],
    side: str,
) -> BatchFeature:
    """`processor_batch` for this model, on its (input embeddings') device and with pixels in its dtype."""
    inputs = processor_batch(architecture(model), processor, texts, images, side).to(input_device(model))
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    return inputs


def load_image(record: Record) -> Image.Image:
    try:
        with Image.open(record.image) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as err:
        raise InputError(record.image, f"cannot read image ({err})", record=record.question_id, field="image") from err


def encode_batch(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    records: Sequence[Record],
    settings: GenerationSettings,
    user_texts: Sequence[str] | None = None,
    images: Sequence[Image.Image] | None = None,
) -> BatchFeature:
    """One left-padded batch of chat prompts with their images, on the model's device and dtype.

    `user_texts` replaces the settings' prompt per record; `images` reuses images already loaded."""
    texts = [
        render_prompt(processor, r.question, settings, user_texts[i] if user_texts else None)
        for i, r in enumerate(records)
    ]
    images = list(images) if images is not None else [load_image(r) for r in records]
    return processor_inputs(model, processor, texts, images, "left")


@torch.inference_mode()
def generate_encoded(
    model: PreTrainedModel, processor: ProcessorMixin, inputs: BatchFeature, max_new_tokens: int
) -> list[str]:
    """Greedy generation for an encoded batch; returns the decoded new text per row."""
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def prompt_and_target(
    processor: ProcessorMixin, question: str, answer: str, settings: GenerationSettings
) -> tuple[str, str]:
    """The inference-time prompt and the text the model must produce after it: the answer as the
    chat template renders the assistant turn, cut at (and including) the end-of-turn token.

    Qwen2-VL renders "red<|im_end|>\\n" (target "red<|im_end|>"); LLaVA-1.5 renders " red " with no
    end token (target " red</s>"), so the leading space the model must generate is kept.
    """
    prompt = render_prompt(processor, question, settings)
    eos = processor.tokenizer.eos_token
    if settings.prompt_template is not None:
        return prompt, answer + eos
    messages = build_messages(question, settings)
    turn = {"role": "assistant", "content": [{"type": "text", "text": answer}]}
    full = processor.apply_chat_template([*messages, turn], tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the assistant turn in a way that does not extend the prompt")
    rest = full[len(prompt) :]
    cut = rest.find(eos)
    return prompt, rest[: cut + len(eos)] if cut >= 0 else rest.rstrip() + eos
