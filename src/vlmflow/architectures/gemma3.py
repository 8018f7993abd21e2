"""Gemma3: per-layer-type rotary embeddings, image tokens attending to their whole image, sliding layers.

Sliding-window layers see the last `sliding_window` keys; the layer-by-layer loop attends to all
of them, so it runs only while a prompt and its new tokens fit inside the window."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PretrainedConfig

from vlmflow.architectures.base import Architecture, UnsupportedStage


def image_blocks(visual: torch.Tensor) -> torch.Tensor:
    """(B, L) id of each position's image (a run of consecutive visual tokens); -1 off the images."""
    previous = torch.nn.functional.pad(visual, (1, 0))[:, :-1]
    starts = visual & ~previous
    return torch.where(visual, starts.long().cumsum(1) - 1, -1)


@dataclass(frozen=True)
class Gemma3(Architecture):
    def position_embeddings(
        self, lm: torch.nn.Module, hidden: torch.Tensor, positions: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        types = lm.config.layer_types
        rotary = {kind: lm.rotary_emb(hidden, positions, kind) for kind in set(types)}
        return [rotary[kind] for kind in types]

    def prefill_allowed(self, mask: torch.Tensor, visual: torch.Tensor, inputs: Mapping[str, Any]) -> torch.Tensor:
        allowed = super().prefill_allowed(mask, visual, inputs)
        block = image_blocks(visual & mask)
        same_image = (block[:, :, None] == block[:, None, :]) & (block[:, :, None] >= 0)
        return allowed | same_image

    def check_length(self, config: PretrainedConfig, total: int) -> None:
        window = getattr(config.get_text_config(), "sliding_window", None)
        if window is not None and total > window:
            raise UnsupportedStage(
                self.family,
                "pruning",
                f"a prompt plus its new tokens ({total}) is longer than the sliding window ({window}) of the "
                "sliding-attention layers, which the layer-by-layer loop does not apply",
            )


ARCHITECTURE = Gemma3(
    family="gemma3",
    model_types=("gemma3",),
    vision_blocks_path="model.vision_tower.encoder.layers",
    nested_images=True,
)
