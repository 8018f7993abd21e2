"""Hybrid checkpoints: model A's vision tower (optionally with its projector) grafted onto model B.

The seed's "2B vision + 1B LLM" hybrid: B keeps its language model (and, by default, its own
projector), A supplies the pixels-to-features part. The result is written with `save_pretrained`
beside B's tokenizer and A's image processor, so it loads through the Auto classes like any
checkpoint. Dimensions are checked before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, PreTrainedModel

from vlmflow.core.io import atomic_directory, write_json


@dataclass(frozen=True)
class VisionParts:
    """Where a family keeps its vision tower and projector, and the config keys that size them."""

    tower: str  # state-dict prefix of the tower (the projector may live inside it)
    projector: str  # state-dict prefix of the projector
    tower_out: str  # vision_config key: width of the tower's patch features
    projector_in: str  # vision_config key the projector's input width follows
    projector_out: str | None  # vision_config key of the projector's output width (None: text hidden size)


VISION_PARTS = {
    "qwen2_vl": VisionParts("model.visual.", "model.visual.merger.", "embed_dim", "embed_dim", "hidden_size"),
    "qwen2_5_vl": VisionParts("model.visual.", "model.visual.merger.", "hidden_size", "hidden_size", "out_hidden_size"),
    "llava": VisionParts("model.vision_tower.", "model.multi_modal_projector.", "hidden_size", "hidden_size", None),
    # InternViT + pixel shuffle: the seed's "2B vision + 1B text" (InternVL2-2B's tower on a 1B language model)
    "internvl": VisionParts("model.vision_tower.", "model.multi_modal_projector.", "hidden_size", "hidden_size", None),
}


class HybridError(ValueError):
    """The two checkpoints cannot be combined as asked."""


def vision_parts(model_type: str) -> VisionParts:
    if model_type not in VISION_PARTS:
        raise HybridError(
            f"hybrid checkpoints support the families {', '.join(sorted(VISION_PARTS))}, not '{model_type}'"
        )
    return VISION_PARTS[model_type]


def check_graft(config_a, config_b, with_projector: bool, a: str, b: str) -> None:
    """Fail with the two widths named when A's features cannot feed B."""
    if config_a.model_type != config_b.model_type:
        raise HybridError(f"{a} is {config_a.model_type} but {b} is {config_b.model_type}: a hybrid needs one family")
    parts = vision_parts(config_a.model_type)
    va, vb = config_a.vision_config, config_b.vision_config
    if with_projector:
        out = getattr(va, parts.projector_out) if parts.projector_out else config_a.text_config.hidden_size
        if out != config_b.text_config.hidden_size:
            raise HybridError(
                f"{a}'s projector outputs {out}-d features but {b}'s language model is "
                f"{config_b.text_config.hidden_size}-d: graft the tower alone (projector: false)"
            )
    elif getattr(va, parts.tower_out) != getattr(vb, parts.projector_in):
        raise HybridError(
            f"{a}'s vision tower outputs {getattr(va, parts.tower_out)}-d features but {b}'s projector takes "
            f"{getattr(vb, parts.projector_in)}-d: graft the projector too (projector: true) or pick matching models"
        )
    merge = "spatial_merge_size"
    if not with_projector and getattr(va, merge, None) != getattr(vb, merge, None):
        raise HybridError(
            f"{a} merges {getattr(va, merge)}x{getattr(va, merge)} patches, {b}'s projector expects {getattr(vb, merge)}"
        )


def hybrid_config(config_a, config_b, with_projector: bool):
    """B's config with A's vision config; the projector's output width stays B's unless grafted."""
    config = config_b.__class__.from_dict(config_b.to_dict())
    vision = config_a.vision_config.to_dict()
    parts = vision_parts(config_b.model_type)
    if parts.projector_out and not with_projector:
        vision[parts.projector_out] = getattr(config_b.vision_config, parts.projector_out)
    vision["dtype"] = config_b.vision_config.to_dict().get("dtype")  # B's precision: its weights stay unrounded
    config.vision_config = config_b.vision_config.__class__.from_dict(vision)
    return config


def graft(model_a: PreTrainedModel, model_b: PreTrainedModel, with_projector: bool) -> PreTrainedModel:
    """A new model of B's class: B's weights, then A's tower (and projector) over them."""
    config = hybrid_config(model_a.config, model_b.config, with_projector)
    parts = vision_parts(config.model_type)
    hybrid = model_b.__class__(config)
    state = dict(model_b.state_dict())
    for name, tensor in model_a.state_dict().items():
        in_projector = name.startswith(parts.projector)
        if (name.startswith(parts.tower) and not in_projector) or (with_projector and in_projector):
            state[name] = tensor
    hybrid.load_state_dict(state, strict=True)
    hybrid.generation_config = model_b.generation_config
    return hybrid


def build_hybrid(
    vision_from: str | Path, language_from: str | Path, out_dir: str | Path, with_projector: bool = False
) -> None:
    """Write the hybrid of `vision_from`'s tower and `language_from`'s language model to `out_dir`
    (atomically: a temporary sibling folder renamed into place)."""
    config_a = AutoConfig.from_pretrained(vision_from, local_files_only=True)
    config_b = AutoConfig.from_pretrained(language_from, local_files_only=True)
    check_graft(config_a, config_b, with_projector, str(vision_from), str(language_from))
    load = {"use_safetensors": True, "local_files_only": True, "dtype": "auto"}
    model_a = AutoModelForImageTextToText.from_pretrained(vision_from, **load)
    model_b = AutoModelForImageTextToText.from_pretrained(language_from, **load)
    hybrid = graft(model_a, model_b, with_projector)
    processor = AutoProcessor.from_pretrained(language_from, local_files_only=True)
    processor.image_processor = AutoProcessor.from_pretrained(vision_from, local_files_only=True).image_processor
    with atomic_directory(out_dir) as tmp:
        hybrid.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        write_json(
            tmp / "vlmflow_hybrid.json",
            {
                "vision_from": str(vision_from),
                "language_from": str(language_from),
                "projector_from": str(vision_from if with_projector else language_from),
            },
        )
