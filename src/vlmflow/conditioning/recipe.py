"""One conditioning recipe of the VL-conditioning study (seed 003): from a prompt to the (tokens,
dim) embeddings a diffusion transformer reads, and the statistics the seed's metadata.json holds.

A recipe (`ConditioningSpec`) takes one VLM extraction (layer, token selection, the text the VLM
reads, with or without the reference image), optionally mixes it with a second one (image tokens
of one extraction with text tokens of another, or two layers), treats its outlier dimensions,
matches its std to the reference encoder's (or a configured target) and blends it with the
reference encoder's embeddings of the prompt:

    vl  = normalise(handle_outliers(extract(source)))
    vl  = mix_weight·vl + (1 − mix_weight)·normalise(handle_outliers(extract(mix_with)))   if mix_with
    out = alpha·vl + (1 − alpha)·reference

Every blend of two sequences of different lengths keeps the shorter length: both start with the
same chat-template tokens, so the leading positions align (`conditioning_stats.blend`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from functools import cache
from typing import Any

import torch
from PIL import Image
from transformers import PreTrainedModel, PreTrainedTokenizerBase, ProcessorMixin

from vlmflow.conditioning.extract import (
    TOKEN_SELECTIONS,
    hidden_layer,
    reference_hidden_states,
    select_tokens,
    vl_forward,
)
from vlmflow.conditioning.stats import (
    NORMALISATIONS,
    OUTLIER_HANDLING,
    blend,
    global_std,
    handle_outliers,
    normalise,
    outlier_dimensions,
    std_correlation,
)


@dataclass(frozen=True)
class VLSource:
    """One VLM extraction: which layer and tokens, for what text, with or without the image."""

    token_selection: str = "full"
    hidden_layer: int = -2
    vl_text: str = "{prompt}"  # what the VLM reads; "{prompt}" is the prompt, "" no text at all
    use_image: bool = True

    def __post_init__(self) -> None:
        if self.token_selection not in TOKEN_SELECTIONS:
            raise ValueError(f"token_selection must be one of {TOKEN_SELECTIONS}, got {self.token_selection!r}")

    def text(self, prompt: str) -> str:
        return self.vl_text.replace("{prompt}", prompt)


@dataclass(frozen=True)
class ConditioningSpec:
    """A recipe; alpha 0 is the reference encoder alone (nothing is extracted from the VLM)."""

    source: VLSource = field(default_factory=VLSource)
    alpha: float = 1.0
    mix_with: VLSource | None = None
    mix_weight: float = 1.0
    normalization: str = "global"
    target_std: float | None = None  # None: the reference encoder's std on this prompt
    outliers: str = "none"
    outlier_ratio: float = 10.0
    reference_layer: int = -2

    def __post_init__(self) -> None:
        if self.normalization not in NORMALISATIONS:
            raise ValueError(f"normalization must be one of {NORMALISATIONS}, got {self.normalization!r}")
        if self.outliers not in OUTLIER_HANDLING:
            raise ValueError(f"outliers must be one of {OUTLIER_HANDLING}, got {self.outliers!r}")
        for name in ("alpha", "mix_weight"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")

    @classmethod
    def from_config(cls, settings: dict[str, Any]) -> ConditioningSpec:
        """From one output's flat settings; `mix_with` holds the fields where the second
        extraction differs from the first."""
        settings = dict(settings)
        source_keys = set(VLSource.__dataclass_fields__)
        source = VLSource(**{k: settings.pop(k) for k in list(settings) if k in source_keys})
        mix = settings.pop("mix_with", None)
        return cls(source=source, mix_with=replace(source, **mix) if mix else None, **settings)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Encoders:
    """The reference text encoder and the VLM, with each prompt's forward pass done once (a
    layer sweep reads every layer from one pass)."""

    def __init__(
        self,
        text_encoder: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        vlm: PreTrainedModel,
        processor: ProcessorMixin,
        image: Image.Image | None,
    ) -> None:
        self.text_encoder, self.tokenizer = text_encoder, tokenizer
        self.vlm, self.processor, self.image = vlm, processor, image
        self.reference = cache(self._reference)
        self.forward = cache(self._forward)

    def _reference(self, prompt: str, layer: int) -> torch.Tensor:
        return reference_hidden_states(self.text_encoder, self.tokenizer, prompt, layer).float()

    def _forward(self, text: str, use_image: bool) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        if use_image and self.image is None:
            raise ValueError("this recipe reads the reference image, but no image is configured")
        return vl_forward(self.vlm, self.processor, text, self.image if use_image else None)

    def vl(self, source: VLSource, prompt: str) -> torch.Tensor:
        hidden_states, token_types = self.forward(source.text(prompt), source.use_image)
        return select_tokens(
            hidden_layer(hidden_states, source.hidden_layer), token_types, source.token_selection
        ).float()


def _prepared(hidden: torch.Tensor, spec: ConditioningSpec, target: float) -> torch.Tensor:
    """Outliers handled, then the std matched: one extraction as the recipe treats it."""
    hidden = handle_outliers(hidden, spec.outlier_ratio, spec.outliers)
    return normalise(hidden, spec.normalization, target)


def condition(encoders: Encoders, prompt: str, spec: ConditioningSpec) -> tuple[torch.Tensor, dict[str, Any]]:
    """The embeddings of `prompt` under `spec` and their statistics (the seed's metadata fields
    plus the outlier count, the per-dimension std correlation with the reference and the cosine
    to it, token by token over the aligned positions)."""
    reference = encoders.reference(prompt, spec.reference_layer)
    stats: dict[str, Any] = {
        "reference_shape": list(reference.shape),
        "reference_std": global_std(reference),
    }
    if spec.alpha == 0.0:
        embeds = reference
        stats |= {"vl_shape": None, "vl_std": None, "outlier_dims": None, "max_outlier_ratio": None}
    else:
        raw = encoders.vl(spec.source, prompt)
        dims, ratios = outlier_dimensions(raw, spec.outlier_ratio)
        target = spec.target_std if spec.target_std is not None else global_std(reference)
        vl = _prepared(raw, spec, target)
        if spec.mix_with is not None:
            second = _prepared(encoders.vl(spec.mix_with, prompt), spec, target)
            vl = blend(vl, second, spec.mix_weight)
        embeds = blend(vl, reference, spec.alpha)
        stats |= {
            "vl_shape": list(vl.shape),
            "vl_std": global_std(vl),
            "outlier_dims": int(dims.numel()),
            "max_outlier_ratio": float(ratios.max()),
        }
    length = min(len(embeds), len(reference))
    cosine = torch.nn.functional.cosine_similarity(embeds[:length], reference[:length], dim=-1).mean()
    stats |= {
        "blended_shape": list(embeds.shape),
        "blended_std": global_std(embeds),
        "std_correlation": std_correlation(embeds, reference),
        "cosine_to_reference": float(cosine),
    }
    return embeds, stats
