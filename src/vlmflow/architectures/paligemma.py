"""PaliGemma: no chat template (prompts come from `prompt_template`), a bidirectional prefix.

The processor builds `<image>… <bos> prompt \n` itself and the prompt (image and text) is one
prefix every prompt token attends to in full. Training appends the answer as the processor's
`suffix`, which the shared answer-only labelling does not build, so fine-tuning and likelihood
scoring are not offered."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from vlmflow.architectures.base import Architecture

SUFFIX = (
    "the processor appends its own '\\n' after the text, so prompt + answer is not the prompt followed by the answer"
)


@dataclass(frozen=True)
class PaliGemma(Architecture):
    def prefill_allowed(self, mask: torch.Tensor, visual: torch.Tensor, inputs: Mapping[str, Any]) -> torch.Tensor:
        allowed = super().prefill_allowed(mask, visual, inputs)
        types = inputs.get("token_type_ids")
        prefix = mask if types is None else mask & (types.to(mask.device) == 0)
        return allowed | (prefix[:, :, None] & prefix[:, None, :])


ARCHITECTURE = PaliGemma(
    family="paligemma",
    model_types=("paligemma",),
    vision_blocks_path="model.vision_tower.encoder.layers",
    unsupported={"scoring": SUFFIX, "lora": SUFFIX, "full_finetune": SUFFIX},
)
