"""Find a model's adapter by its config's `model_type`; unknown families get inference only."""

from __future__ import annotations

from transformers import PretrainedConfig, PreTrainedModel

from vlmflow.architectures import (
    gemma3,
    idefics3,
    internvl,
    llava,
    llava_onevision,
    paligemma,
    qwen2_5_vl,
    qwen2_vl,
    qwen3_vl,
    smolvlm,
)
from vlmflow.architectures.base import STAGES, Architecture

ARCHITECTURES: dict[str, Architecture] = {
    module.ARCHITECTURE.family: module.ARCHITECTURE
    for module in (
        qwen2_vl,
        qwen2_5_vl,
        qwen3_vl,
        internvl,
        idefics3,
        smolvlm,
        llava,
        llava_onevision,
        gemma3,
        paligemma,
    )
}
_BY_MODEL_TYPE = {kind: arch for arch in ARCHITECTURES.values() for kind in arch.model_types}


def generic(model_type: str) -> Architecture:
    """An unknown family: `generate` through the Auto classes works; nothing that needs its layout does."""
    why = f"vlmflow has no adapter for it; known families: {', '.join(ARCHITECTURES)} (see docs/extending.md)"
    return Architecture(
        family=model_type,
        model_types=(model_type,),
        unsupported={stage: why for stage in STAGES if stage != "inference"},
    )


def architecture_of(config: PretrainedConfig) -> Architecture:
    return _BY_MODEL_TYPE.get(config.model_type) or generic(config.model_type)


def architecture(model: PreTrainedModel) -> Architecture:
    """The adapter for a loaded model (a PEFT wrapper is looked through)."""
    config = model.get_base_model().config if hasattr(model, "get_base_model") else model.config
    return architecture_of(config)
