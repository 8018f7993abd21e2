"""The adapter every stage asks: where a VLM's parts are and how its language model is driven."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image
from transformers import PretrainedConfig, PreTrainedModel

# Every stage that depends on the family, with what it needs from the adapter.
STAGES = {
    "inference": "batched generation through the processor and `generate`",
    "scoring": "constrained and likelihood decoding over the candidates",
    "lora": "LoRA fine-tuning of the language model",
    "full_finetune": "full fine-tuning",
    "hooks": "hidden states from the decoder layers",
    "pruning": "guided / FastV / random visual-token pruning inside the language model",
    "shared_vision": "one vision-tower pass shared by a guide and a decode model",
}


class UnsupportedStage(ValueError):
    """A stage the model family cannot run (yet): named with the family, the stage and why."""

    def __init__(self, family: str, stage: str, why: str) -> None:
        super().__init__(
            f"model family '{family}' does not support stage '{stage}' ({STAGES.get(stage, stage)}): {why}"
        )
        self.family, self.stage = family, stage


def causal_allowed(mask: torch.Tensor) -> torch.Tensor:
    """(B, L, L) bool: each position attends to itself and the earlier non-padding positions."""
    length = mask.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
    return causal[None] & mask[:, None, :]


def _get(module: Any, path: str) -> Any:
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


@dataclass(frozen=True)
class Architecture:
    """One model family's answers. The defaults are those of the Qwen2-VL / LLaVA families."""

    family: str
    model_types: tuple[str, ...]
    language_model_path: str = "model.language_model"  # the decoder-only language model (no LM head)
    vision_blocks_path: str | None = None  # the vision tower's transformer blocks
    nested_images: bool = False  # the processor wants one image list per prompt
    batch_positions: bool = False  # the forward builds M-RoPE positions per sample: training does it with the batch
    unsupported: Mapping[str, str] = field(default_factory=dict)  # stage -> why not

    def require(self, stage: str) -> None:
        """Raise `UnsupportedStage` unless this family runs `stage`."""
        if stage not in STAGES:
            raise KeyError(f"unknown stage '{stage}'; stages: {', '.join(STAGES)}")
        if stage in self.unsupported:
            raise UnsupportedStage(self.family, stage, self.unsupported[stage])

    def supports(self, stage: str) -> bool:
        return stage not in self.unsupported

    # --- where the parts are -------------------------------------------------------------------

    def language_model(self, model: PreTrainedModel) -> torch.nn.Module:
        lm = _get(model, self.language_model_path)
        if lm is None or not hasattr(lm, "layers"):
            raise TypeError(f"{type(model).__name__} ({self.family}): no language model at {self.language_model_path}")
        return lm

    def language_module_name(self) -> str:
        """The attribute name of the language model: what LoRA's target pattern matches."""
        return self.language_model_path.rsplit(".", 1)[-1]

    def decoder_layers(self, model: PreTrainedModel) -> tuple[str, torch.nn.ModuleList]:
        return f"{self.language_model_path}.layers", self.language_model(model).layers

    def vision_blocks(self, model: PreTrainedModel) -> torch.nn.ModuleList:
        blocks = _get(model, self.vision_blocks_path) if self.vision_blocks_path else None
        if not isinstance(blocks, torch.nn.ModuleList):
            raise UnsupportedStage(self.family, "shared_vision", f"no vision blocks at {self.vision_blocks_path}")
        return blocks

    # --- how the processor takes images --------------------------------------------------------

    def processor_images(self, images: Sequence[Image.Image]) -> list[Any]:
        """Images as this family's processor takes them for one prompt each."""
        return [[image] for image in images] if self.nested_images else list(images)

    # --- how the language model is driven layer by layer (token pruning) -----------------------

    def position_embeddings(
        self, lm: torch.nn.Module, hidden: torch.Tensor, positions: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per decoder layer, the rotary (cos, sin) for `positions` ((B, L), or (3|4, B, L) multimodal)."""
        if positions.dim() == 3 and positions.shape[0] == 4:  # text row first, then the M-RoPE rows
            positions = positions[1:]
        rotary = lm.rotary_emb(hidden, positions)
        return [rotary] * len(lm.layers)

    def prefill_allowed(self, mask: torch.Tensor, visual: torch.Tensor, inputs: Mapping[str, Any]) -> torch.Tensor:
        """(B, L, L) bool: which keys each prompt position attends to at the prefill (causal, no padding)."""
        return causal_allowed(mask)

    def check_length(self, config: PretrainedConfig, total: int) -> None:
        """Fail when a prompt plus its new tokens is longer than the layer-by-layer loop handles."""

    def language_extras(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """What else the VLM hands its language model that the loop must apply (captured kwargs)."""
        return {}

    def after_layer(
        self, index: int, hidden: torch.Tensor, extras: Mapping[str, Any], kept: torch.Tensor | None
    ) -> torch.Tensor:
        """The hidden states after decoder layer `index` at the prefill; `kept` (B, L') gathers the
        pruned sequence from the full one, None before pruning."""
        return hidden
