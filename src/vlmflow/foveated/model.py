"""The foveated VLM of seed 001 (nanoSmol fVLM) and its multi-token baseline, from transformers parts.

A DINOv2 encoder sees every frame once (`foveated_query.encode_frames`); a query token per frame
picks what the language model gets from it: ONE visual token per frame, projected by a linear
connector and scaled by `visual_scale` to the size of the LM's embeddings. Visual tokens come
first, then the text.

- coarse pass: a learned static query for every frame;
- fine pass: the LM's hidden state after frame t (in the coarse pass) becomes, through a linear
  head, the query for frame t+1; frame 0 gets a learned initial query;
- autoregressive (true inference): the LM's hidden state after the FINE token of frame t gives the
  query for frame t+1, one frame at a time with the LM's KV cache.

The multi-token baseline (B1) skips the query: every frame's patch features, average-pooled to a
grid x grid map, are projected token by token. Both save to one folder: `config.json`,
`model.safetensors` and the tokenizer and image processor files.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import nn
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    Dinov2Config,
    Dinov2Model,
    DynamicCache,
    PreTrainedModel,
)

from vlmflow.core.io import atomic_directory
from vlmflow.foveated.query import FrameCache, encode_frames, pooled_patches, query_frames

ARCHITECTURES = ("foveated", "multi_token")
MODES = {
    "foveated": ("coarse_only", "coarse_fine", "autoregressive"),
    "multi_token": ("multi_token",),
}
# Parameter groups with their own learning rate and freeze switch (the seed's connector / DINO / LLM).
GROUPS = ("connector", "vision", "language")


@dataclass
class FrameLMOutput:
    """`loss` is what training minimises; `loss_fine` / `loss_coarse` are the two passes' text
    cross-entropies (None where a pass did not run). `token_losses` (batch, text-1) and `correct`
    (batch, text-1) hold each supervised next-token loss and whether its argmax was right.
    `attention` maps a pass name to its last-layer query attention (batch, frames, heads, tokens)."""

    loss: torch.Tensor
    loss_fine: torch.Tensor | None
    loss_coarse: torch.Tensor | None
    token_losses: torch.Tensor
    correct: torch.Tensor
    attention: dict[str, torch.Tensor]


def scatter_frames(values: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """Values of the real frames (n_real, ...) back to (batch, frames, ...), zeros at padding."""
    out = values.new_zeros(*frame_mask.shape, *values.shape[1:])
    out[frame_mask] = values
    return out


def select_frames(cache: FrameCache, index: torch.Tensor) -> FrameCache:
    """The cache of some of the encoded frames."""
    return FrameCache([k[index] for k in cache.keys], [v[index] for v in cache.values], cache.patches[index])


def text_loss(logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Next-token cross-entropy over the text (position i predicts token i+1 where loss_mask[i+1]).

    The first text token is never a target: it follows the visual tokens (or their padding) and is
    the same template token for every sample. Returns the mean, the per-token losses and hits."""
    shift_logits, targets, mask = logits[:, :-1], input_ids[:, 1:], loss_mask[:, 1:]
    losses = F.cross_entropy(shift_logits.transpose(1, 2).float(), targets, reduction="none") * mask
    correct = (shift_logits.argmax(-1) == targets) & (mask > 0)
    return losses.sum() / mask.sum().clamp_min(1), losses, correct


class FrameLM(nn.Module, ABC):
    """What both architectures share: the DINOv2 encoder, the causal LM, the linear connector,
    the text loss, the parameter groups and the folder format."""

    architecture = ""
    default_mode = ""

    def __init__(self, vision: Dinov2Model, language: PreTrainedModel, visual_scale: float) -> None:
        super().__init__()
        self.vision, self.language, self.visual_scale = vision, language, visual_scale
        self.connector = nn.Linear(vision.config.hidden_size, language.config.hidden_size)

    @property
    def settings(self) -> dict[str, Any]:
        return {"architecture": self.architecture, "visual_scale": self.visual_scale}

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return self.connector(features) * self.visual_scale

    def group_of(self, name: str) -> str:
        """connector, vision or language: which learning rate and freeze switch a parameter follows."""
        root = name.split(".")[0]
        return root if root in ("vision", "language") else "connector"

    def run_language(
        self,
        visual: torch.Tensor,
        visual_mask: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        loss_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """The LM over [visual tokens, text]; the text loss."""
        text = self.language.get_input_embeddings()(input_ids)
        embeds = torch.cat([visual.to(text.dtype), text], dim=1)
        mask = torch.cat([visual_mask.long(), attention_mask], dim=1)
        logits = self.language(inputs_embeds=embeds, attention_mask=mask).logits[:, visual.shape[1] :]
        return text_loss(logits, input_ids, loss_mask)

    def forward(
        self,
        pixel_values: torch.Tensor,
        frame_mask: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        loss_mask: torch.Tensor,
        mode: str | None = None,
        lambda_coarse: float = 0.0,
    ) -> FrameLMOutput:
        """Text loss in one of the architecture's MODES (default: the one it trains in). A batch
        without a single frame is the LM on the text, whatever the mode; otherwise DINOv2 runs once
        over the real frames and `read_frames` turns them into the LM's visual tokens."""
        modes = MODES[self.architecture]
        mode = mode or self.default_mode
        if mode not in modes:
            raise ValueError(f"unknown mode '{mode}' for the {self.architecture} model; choose one of {modes}")
        text = (input_ids, attention_mask, loss_mask)
        if not frame_mask.any():
            loss, losses, correct = self.text_only(frame_mask, *text)
            fine = loss if mode in ("coarse_fine", "autoregressive") else None
            coarse = loss if mode in ("coarse_only", "coarse_fine") else None
            if mode == "coarse_fine" and lambda_coarse > 0:  # as in a batch with frames: fine + lambda coarse
                loss = loss + lambda_coarse * loss
            return FrameLMOutput(loss, fine, coarse, losses, correct, {})
        cache = encode_frames(self.vision, pixel_values[frame_mask])
        return self.read_frames(cache, frame_mask, text, mode, lambda_coarse)

    @abstractmethod
    def read_frames(
        self,
        cache: FrameCache,
        frame_mask: torch.Tensor,
        text: tuple[torch.Tensor, ...],
        mode: str,
        lambda_coarse: float,
    ) -> FrameLMOutput:
        """The text loss given the encoded frames: each architecture turns them into visual
        tokens its own way (FoveatedVLM by query passes, MultiTokenVLM by pooling)."""

    def text_only(
        self, frame_mask: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor, loss_mask: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """The text loss of a batch without a single frame (every pass is the same then)."""
        visual = self.connector.weight.new_zeros(input_ids.shape[0], 0, self.language.config.hidden_size)
        return self.run_language(visual, frame_mask[:, :0], input_ids, attention_mask, loss_mask)

    def save_pretrained(self, directory: str | Path, tokenizer: Any, image_processor: Any) -> None:
        """config.json + model.safetensors + tokenizer + image processor, written atomically."""
        dtype = str(self.connector.weight.dtype).removeprefix("torch.")  # as trained: fp16 parts train in fp32
        with atomic_directory(directory) as tmp:
            config = {
                **self.settings,
                "vision_config": {**self.vision.config.to_dict(), "dtype": dtype},
                "text_config": {**self.language.config.to_dict(), "dtype": dtype},
            }
            (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
            save_model(self, str(tmp / "model.safetensors"))
            tokenizer.save_pretrained(tmp)
            image_processor.save_pretrained(tmp)


class FoveatedVLM(FrameLM):
    """One visual token per frame through a foveated query (deep, or shallow: last layer only)."""

    architecture = "foveated"
    default_mode = "coarse_fine"

    def __init__(
        self,
        vision: Dinov2Model,
        language: PreTrainedModel,
        visual_scale: float = 0.14,
        deep_query: bool = True,
    ) -> None:
        super().__init__(vision, language, visual_scale)
        self.deep_query = deep_query
        width = vision.config.hidden_size
        self.query_head = nn.Linear(language.config.hidden_size, width)
        # std 1 (as fVLM): the queries must start distinct from the projections' biases.
        self.q_static = nn.Parameter(torch.randn(width))
        self.q_init = nn.Parameter(torch.randn(width))

    @property
    def settings(self) -> dict[str, Any]:
        return {**super().settings, "deep_query": self.deep_query}

    def look(self, cache: FrameCache, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected visual tokens (n, lm_hidden) and attention (n, heads, tokens) for one query per frame."""
        features, weights = query_frames(self.vision, cache, queries, deep=self.deep_query)
        return self.project(features), weights

    def read_frames(
        self,
        cache: FrameCache,
        frame_mask: torch.Tensor,
        text: tuple[torch.Tensor, ...],
        mode: str,
        lambda_coarse: float,
    ) -> FrameLMOutput:
        """`coarse_only`, `coarse_fine` (training's two parallel passes) or `autoregressive`
        (sequential, KV-cached; evaluation only). In `coarse_fine` the coarse loss is
        `lambda_coarse` times auxiliary; with lambda 0 it is still computed, without gradient, for
        the loss_fine / loss_coarse ratio."""
        if mode == "autoregressive":
            return self.autoregressive(cache, frame_mask, *text)
        n_real = cache.patches.shape[0]
        coarse, coarse_weights = self.look(cache, self.q_static.expand(n_real, -1))
        coarse_tokens = scatter_frames(coarse, frame_mask)
        attention = {"coarse": scatter_frames(coarse_weights, frame_mask)}
        if mode == "coarse_only":
            loss, losses, correct = self.run_language(coarse_tokens, frame_mask, *text)
            return FrameLMOutput(loss, None, loss, losses, correct, attention)

        hidden = self.language.model(inputs_embeds=coarse_tokens, attention_mask=frame_mask.long()).last_hidden_state
        queries = self.query_head(hidden)
        first = self.q_init.expand(queries.shape[0], 1, -1)
        shifted = torch.cat([first, queries[:, :-1]], dim=1)  # frame t+1 asks what the LM wants after frame t
        fine, fine_weights = self.look(cache, shifted[frame_mask])
        attention["fine"] = scatter_frames(fine_weights, frame_mask)
        loss_fine, losses, correct = self.run_language(scatter_frames(fine, frame_mask), frame_mask, *text)
        with torch.set_grad_enabled(torch.is_grad_enabled() and lambda_coarse > 0):
            loss_coarse = self.run_language(coarse_tokens, frame_mask, *text)[0]
        loss = loss_fine + lambda_coarse * loss_coarse if lambda_coarse > 0 else loss_fine
        return FrameLMOutput(loss, loss_fine, loss_coarse.detach(), losses, correct, attention)

    @torch.no_grad()
    def autoregressive(
        self,
        cache: FrameCache,
        frame_mask: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        loss_mask: torch.Tensor,
    ) -> FrameLMOutput:
        """Frame by frame, as at inference: the query for frame t+1 comes from the LM's hidden state
        after frame t's fine token, the LM's keys and values kept in its cache."""
        batch, frames = frame_mask.shape
        index = torch.full(frame_mask.shape, -1, dtype=torch.long, device=frame_mask.device)
        index[frame_mask] = torch.arange(int(frame_mask.sum()), device=frame_mask.device)
        past = DynamicCache(config=self.language.config)
        query = self.q_init.expand(batch, -1)
        weights = None
        width = self.language.config.hidden_size
        for t in range(frames):
            real = frame_mask[:, t]
            token = query.new_zeros(batch, width)
            step_weights = None
            if real.any():
                looked, w = self.look(select_frames(cache, index[real, t]), query[real])
                token[real] = looked
                step_weights = w.new_zeros(batch, *w.shape[1:])
                step_weights[real] = w
                weights = weights if weights is not None else w.new_zeros(batch, frames, *w.shape[1:])
                weights[:, t] = step_weights
            out = self.language.model(
                inputs_embeds=token.unsqueeze(1),
                attention_mask=frame_mask[:, : t + 1].long(),
                cache=past,
                use_cache=True,
            )
            query = self.query_head(out.last_hidden_state[:, -1])
        text = self.language.get_input_embeddings()(input_ids)
        mask = torch.cat([frame_mask.long(), attention_mask], dim=1)
        logits = self.language(inputs_embeds=text, attention_mask=mask, cache=past if frames else None).logits
        loss, losses, correct = text_loss(logits, input_ids, loss_mask)
        return FrameLMOutput(loss, loss, None, losses, correct, {"fine": weights} if weights is not None else {})


class MultiTokenVLM(FrameLM):
    """The seed's B1: grid x grid average-pooled patch tokens per frame, no query, one pass."""

    architecture = "multi_token"
    default_mode = "multi_token"

    def __init__(
        self,
        vision: Dinov2Model,
        language: PreTrainedModel,
        visual_scale: float = 0.14,
        grid: int = 4,
    ) -> None:
        super().__init__(vision, language, visual_scale)
        self.grid = grid

    @property
    def settings(self) -> dict[str, Any]:
        return {**super().settings, "grid": self.grid}

    def read_frames(
        self,
        cache: FrameCache,
        frame_mask: torch.Tensor,
        text: tuple[torch.Tensor, ...],
        mode: str,
        lambda_coarse: float,
    ) -> FrameLMOutput:
        tokens = scatter_frames(self.project(pooled_patches(cache, self.grid)), frame_mask)
        batch, frames = frame_mask.shape
        visual = tokens.reshape(batch, frames * self.grid**2, -1)
        visual_mask = frame_mask.repeat_interleave(self.grid**2, dim=1)
        loss, losses, correct = self.run_language(visual, visual_mask, *text)
        return FrameLMOutput(loss, None, None, losses, correct, {})


def training_mode(model: FrameLM, mode: str) -> str:
    """The passes a run trains: its `mode` for the foveated model, the baseline's one pass."""
    return mode if model.architecture == "foveated" else model.default_mode


def visual_tokens_per_frame(model: FrameLM) -> int:
    return model.grid**2 if isinstance(model, MultiTokenVLM) else 1


def _assemble(vision: Dinov2Model, language: PreTrainedModel, settings: dict[str, Any]) -> FrameLM:
    architecture = settings.get("architecture", "foveated")
    if architecture == "foveated":
        return FoveatedVLM(vision, language, settings.get("visual_scale", 0.14), settings.get("deep_query", True))
    if architecture == "multi_token":
        return MultiTokenVLM(vision, language, settings.get("visual_scale", 0.14), settings.get("grid", 4))
    raise ValueError(f"unknown architecture '{architecture}'; choose one of {ARCHITECTURES}")


def from_parts(
    vision_path: str | Path, language_path: str | Path, settings: dict[str, Any], seed: int = 0
) -> tuple[FrameLM, Any, Any]:
    """A fresh model from a DINOv2 checkpoint and a causal-LM checkpoint (e.g. local copies of
    facebook/dinov2-small and HuggingFaceTB/SmolLM2-135M-Instruct); the connector and queries are
    initialised from `seed`. Returns (model, tokenizer, image processor)."""
    offline = {"local_files_only": True}  # local folders only: no hub at run time
    vision = AutoModel.from_pretrained(vision_path, use_safetensors=True, **offline)
    if not isinstance(vision, Dinov2Model):
        raise ValueError(f"{vision_path}: the foveated query needs a DINOv2 encoder, found {type(vision).__name__}")
    language = AutoModelForCausalLM.from_pretrained(language_path, use_safetensors=True, **offline)
    torch.manual_seed(seed)
    model = _assemble(vision, language, settings)
    tokenizer = AutoTokenizer.from_pretrained(language_path, **offline)
    return model, tokenizer, AutoImageProcessor.from_pretrained(vision_path, **offline)


def load_frame_lm(directory: str | Path) -> tuple[FrameLM, Any, Any]:
    """A model saved by `save_pretrained`, with its tokenizer and image processor."""
    directory = Path(directory)
    config = json.loads((directory / "config.json").read_text())
    text_config = dict(config.pop("text_config"))
    vision = Dinov2Model(Dinov2Config(**config.pop("vision_config")))
    language = AutoModelForCausalLM.from_config(AutoConfig.for_model(text_config.pop("model_type"), **text_config))
    model = _assemble(vision, language, config)
    missing, unexpected = load_model(model, str(directory / "model.safetensors"), strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{directory}/model.safetensors does not fit config.json (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return (
        model,
        AutoTokenizer.from_pretrained(directory, local_files_only=True),
        AutoImageProcessor.from_pretrained(directory, local_files_only=True),
    )
