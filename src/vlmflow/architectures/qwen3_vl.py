"""Qwen3-VL: deepstack adds visual features from early tower layers after the first decoder layers.

The VLM hands its language model `visual_pos_masks` (B, L) and `deepstack_visual_embeds`, one
(N_visual, D) tensor per early decoder layer, rows in (sample, position) order. After layer i < len
of that list the features are added at the visual positions; once the sequence is pruned, only
the kept visual tokens receive theirs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from vlmflow.architectures.base import Architecture


@dataclass(frozen=True)
class Qwen3VL(Architecture):
    def language_extras(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        embeds, where = kwargs.get("deepstack_visual_embeds"), kwargs.get("visual_pos_masks")
        if embeds is None or where is None:
            return {}
        return {"deepstack": list(embeds), "deepstack_at": where.bool()}

    def after_layer(
        self, index: int, hidden: torch.Tensor, extras: Mapping[str, Any], kept: torch.Tensor | None
    ) -> torch.Tensor:
        features = extras.get("deepstack")
        if not features or index >= len(features):
            return hidden
        where = extras["deepstack_at"].to(hidden.device)  # (B, L) over the full prompt
        row = where.flatten().long().cumsum(0).view_as(where) - 1  # (B, L) row of each visual position
        if kept is not None:
            kept = kept.to(hidden.device)
            where, row = where.gather(1, kept), row.gather(1, kept)
        hidden = hidden.clone()
        hidden[where] = hidden[where] + features[index].to(hidden.device, hidden.dtype)[row[where]]
        return hidden


ARCHITECTURE = Qwen3VL(
    family="qwen3_vl", model_types=("qwen3_vl",), vision_blocks_path="model.visual.blocks", batch_positions=True
)
