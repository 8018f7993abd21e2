"""Greedy generation that can drop visual tokens inside the language model (SGL, FastV).

The decoder layers are driven one by one, as the transformers modeling files do, so that at layer
K (SGL: int(num_layers * prune_layer)) the sequence can shrink: layers before K see every token, layers
from K on see the prompt with only the kept visual tokens, in their original order and with their
ORIGINAL position ids (multimodal rotary positions included). The KV cache therefore holds the full
prompt for layers < K and the pruned one from K on, and every later step attends to each with its
own padding mask. Works on a left-padded batch, each sample keeping its own tokens.

The same loop serves the guide: `observe` hooks see each layer's attention weights as they are
computed (eager attention), and `forced` tokens re-score a given answer instead of generating.
The model's own embedding and vision code prepares the inputs (`prepare_inputs`); what the families
do differently inside their language model (per-layer rotary, bidirectional image or prefix
attention, deepstack features) the family's adapter (`vlmflow.architectures`) supplies.

A model spread over several devices by a device map runs the same loop: the prepared inputs and
the loop's bookkeeping stay where the input embeddings compute, accelerate's hooks move each
layer's inputs to its device, and whatever crosses from a layer back to the loop is moved home.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache, PreTrainedModel

from vlmflow.architectures.base import causal_allowed
from vlmflow.architectures.registry import architecture
from vlmflow.core.placement import input_device
from vlmflow.guided.shared_vision import SharedVision


@dataclass
class LanguageInputs:
    """What the VLM hands its language model for one left-padded batch."""

    embeds: torch.Tensor  # (B, L, D) text embeddings with the image features scattered in
    positions: torch.Tensor  # (B, L), or (3 or 4, B, L) for multimodal rotary positions
    mask: torch.Tensor  # (B, L) bool, False on padding
    visual: torch.Tensor  # (B, L) bool, True on the image tokens
    allowed: torch.Tensor | None = None  # (B, L, L) bool prefill attention (None: causal without padding)
    extras: dict[str, Any] = field(default_factory=dict)  # what else the family's layers need (deepstack)

    def prefill_allowed(self) -> torch.Tensor:
        return causal_allowed(self.mask) if self.allowed is None else self.allowed

    @property
    def visual_counts(self) -> list[int]:
        return self.visual.sum(1).tolist()


@dataclass
class Generation:
    tokens: torch.Tensor  # (B, T) greedy (or forced) tokens; after EOS: pad
    logprobs: torch.Tensor  # (B, T) log-probability of each token; after EOS: 0
    lengths: torch.Tensor  # (B,) tokens up to and including EOS
    kept: list[torch.Tensor] | None  # per sample, the indices (among its visual tokens) kept


class _Captured(Exception):
    """Raised by the pre-hook once the language model's inputs are in hand."""


def language_model(model: PreTrainedModel) -> torch.nn.Module:
    """The decoder-only language model the loop drives; a family without pruning support fails here."""
    arch = architecture(model)
    arch.require("pruning")
    return arch.language_model(model)


def image_token_id(model: PreTrainedModel) -> int:
    config = model.config
    value = getattr(config, "image_token_id", None)
    if value is None:
        value = getattr(config, "image_token_index", None)
    if value is None:
        raise TypeError(f"{type(model).__name__}: the config names no image token id")
    return value


@torch.inference_mode()
def prepare_inputs(
    model: PreTrainedModel, inputs: dict[str, torch.Tensor], shared: SharedVision | None = None
) -> LanguageInputs:
    """Run the VLM's own embedding, vision and position code up to its language model, and stop.

    With `shared`, the vision tower's blocks run once for all models that share it (the first
    model's pass is recorded, the others replay it). Everything returned is on the model's input
    device."""
    arch = architecture(model)
    lm = language_model(model)
    captured: dict[str, Any] = {}

    def grab(_module, _args, kwargs):
        captured.update(kwargs)
        raise _Captured

    handle = lm.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with shared.run(model) if shared is not None else nullcontext(), suppress(_Captured):
            model.model(**inputs)
    finally:
        handle.remove()
    home = input_device(model)
    mask = inputs["attention_mask"].to(home).bool()
    positions = captured.get("position_ids")
    if positions is None or positions.dim() == 2:  # 1D rotary: what generate() derives from a left-padded mask
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    visual = inputs["input_ids"].to(home) == image_token_id(model)
    return LanguageInputs(
        captured["inputs_embeds"].to(home),
        positions.to(home),
        mask,
        visual,
        arch.prefill_allowed(mask, visual, inputs),
        arch.language_extras(captured),
    )


def additive_mask(keys: torch.Tensor, queries: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, queries, keys) additive mask: causal over the last `queries` keys, padding hidden."""
    length = keys.shape[1]
    query_at = torch.arange(length - queries, length, device=keys.device)[:, None]
    causal = torch.arange(length, device=keys.device)[None, :] <= query_at
    return additive(causal[None] & keys[:, None, :], dtype)


def additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, Q, K) additive attention mask from a (B, Q, K) bool one."""
    zeros = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return zeros.masked_fill(~allowed, torch.finfo(dtype).min)[:, None]


def gather_allowed(allowed: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The (B, L', L') prefill attention among the kept positions `index` (B, L')."""
    rows = allowed.gather(1, index[..., None].expand(-1, -1, allowed.shape[2]))
    return rows.gather(2, index[:, None, :].expand(-1, index.shape[1], -1))


def take(positions: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Gather sequence positions `index` (B, L') from (B, L) or (3, B, L) position ids."""
    if positions.dim() == 2:
        return positions.gather(1, index)
    return positions.gather(2, index.unsqueeze(0).expand(positions.shape[0], -1, -1))


def keep_index(
    inputs: LanguageInputs, scores: Sequence[torch.Tensor], keep_ratio: float
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Sequence indices to keep per sample: every non-visual token plus the top int(N * keep_ratio)
    visual tokens by score (ties to the earlier token), in original order; rows of different length
    are left-padded with masked copies of position 0. Returns (index, mask, kept visual ranks)."""
    rows, kept = [], []
    for b, score in enumerate(scores):
        visual = inputs.visual[b].nonzero().squeeze(1)
        if score.numel() != visual.numel():
            raise ValueError(f"sample {b}: {score.numel()} scores for {visual.numel()} visual tokens")
        k = int(visual.numel() * keep_ratio)
        top = torch.sort(torch.argsort(-score.float(), stable=True)[:k]).values
        kept.append(top.cpu())
        keep = ~inputs.visual[b]
        keep[visual[top.to(visual.device)]] = True
        rows.append(keep.nonzero().squeeze(1))
    width = max(len(r) for r in rows)
    device = inputs.mask.device
    index = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    mask = torch.zeros(len(rows), width, dtype=torch.bool, device=device)
    for b, row in enumerate(rows):
        index[b, width - len(row) :] = row
        mask[b, width - len(row) :] = inputs.mask[b, row]
    return index, mask, kept


def fastv_scores(weights: torch.Tensor, inputs: LanguageInputs) -> list[torch.Tensor]:
    """FastV's ranking: the last prompt token's attention to each visual token, mean over heads."""
    last = weights[:, :, -1, :].float().mean(1).to(inputs.visual.device)  # (B, L)
    return [last[b][inputs.visual[b]] for b in range(last.shape[0])]


def prune_layer_index(num_layers: int, prune_layer: float) -> int:
    """SGL's K = int(num_layers * prune_layer): the first layer that sees the pruned sequence."""
    if not 0.0 <= prune_layer < 1.0:
        raise ValueError(f"prune_layer {prune_layer}: a fraction of the depth in [0, 1)")
    return int(num_layers * prune_layer)


@torch.inference_mode()
def generate(
    model: PreTrainedModel,
    inputs: LanguageInputs,
    *,
    max_new_tokens: int,
    eos_token_ids: Sequence[int],
    pad_token_id: int,
    keep_ratio: float = 1.0,
    prune_at: int = 0,
    scores: Sequence[torch.Tensor] | None = None,
    fastv: bool = False,
    forced: torch.Tensor | None = None,
    forced_lengths: torch.Tensor | None = None,
    observe: Callable[[int, torch.Tensor, torch.Tensor | None], None] | None = None,
) -> Generation:
    """Greedy decoding (or scoring of `forced` tokens) with optional visual-token pruning.

    Pruning happens at layer `prune_at` (K) when keep_ratio < 1: by `scores` (one vector per sample, aligned with its
    visual tokens: the guide's importance, or random), or with `fastv` by the model's own last-token
    attention at layer K-1 (needs eager attention and K >= 1). With `forced` (B, T) tokens, of which
    the first `forced_lengths` count per sample, those are scored instead of generated. `observe(layer, weights, active)` is
    called with each layer's attention weights (eager attention): `active` is None at the prefill
    and, at each later step, which samples are still generating.
    """
    arch = architecture(model)
    lm = language_model(model)
    layers = lm.layers
    K = prune_at
    if not 0 <= K < len(layers):
        raise ValueError(f"prune layer {K}: the language model has layers 0..{len(layers) - 1}")
    prune = keep_ratio < 1.0
    if prune and fastv and K == 0:
        raise ValueError("FastV ranks by the attention of layer K-1: it needs K >= 1 (raise prune_layer)")
    if prune and not fastv and scores is None:
        raise ValueError("pruning needs scores (guide importance or random) or fastv=True")
    steps = forced.shape[1] if forced is not None else max_new_tokens
    arch.check_length(model.config, inputs.embeds.shape[1] + steps)
    head = model.lm_head if hasattr(model, "lm_head") else model.get_output_embeddings()
    softcap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)

    home = inputs.mask.device  # the loop's own tensors; the layers' hooks move their inputs

    def next_logits(last: torch.Tensor) -> torch.Tensor:
        logits = head(lm.norm(last))[:, -1].float().to(home)
        return torch.tanh(logits / softcap) * softcap if softcap else logits

    batch = inputs.embeds.shape[0]
    cache = DynamicCache(config=lm.config)
    dtype = inputs.embeds.dtype
    captured: dict[str, torch.Tensor] = {}
    hooks = []
    if observe is not None:
        state = {"active": None}
        for i, layer in enumerate(layers):
            hooks.append(
                layer.self_attn.register_forward_hook(
                    lambda _m, _a, out, i=i: observe(i, _weights(out), state["active"])
                )
            )
    if prune and fastv:
        hooks.append(
            layers[K - 1].self_attn.register_forward_hook(
                lambda _m, _a, out: captured.__setitem__("weights", _weights(out))
            )
        )
    try:
        # Prefill: every token up to layer K, the kept ones from K on.
        hidden, positions, keys = inputs.embeds, inputs.positions, inputs.mask
        allowed = inputs.prefill_allowed()
        full_keys, kept, index = keys, None, None
        for i, layer in enumerate(layers):
            if prune and i == K:
                ranking = fastv_scores(captured["weights"], inputs) if fastv else scores
                index, keys, kept = keep_index(inputs, ranking, keep_ratio)
                hidden = hidden.gather(1, index.to(hidden.device)[..., None].expand(-1, -1, hidden.shape[-1]))
                positions = take(positions, index)
                allowed = gather_allowed(allowed, index) & keys[:, None, :]
            if i == 0 or (prune and i == K):
                rotary = arch.position_embeddings(lm, hidden, positions)
                mask = additive(allowed, dtype)
            hidden = layer(hidden, attention_mask=mask, position_embeddings=rotary[i], cache=cache, use_cache=True)
            hidden = arch.after_layer(i, hidden, inputs.extras, index)
        pruned_keys = keys
        logits = next_logits(hidden[:, -1:])
        next_position = _last(inputs.positions) + 1
        eos = torch.tensor(list(eos_token_ids), device=home)
        tokens = torch.full((batch, steps), pad_token_id, dtype=torch.long, device=home)
        logprobs = torch.zeros(batch, steps, device=home)
        done = torch.zeros(batch, dtype=torch.bool, device=home)
        lengths = torch.zeros(batch, dtype=torch.long, device=home)
        for t in range(steps):
            log_softmax = torch.log_softmax(logits, -1)
            token = forced[:, t].to(home) if forced is not None else log_softmax.argmax(-1)
            token = torch.where(done, pad_token_id, token)
            tokens[:, t] = token
            logprobs[:, t] = torch.where(done, 0.0, log_softmax.gather(1, token[:, None]).squeeze(1))
            lengths += (~done).long()
            done = done | torch.isin(token, eos)
            if forced is not None:
                done = done | (forced_lengths.to(done.device) <= t + 1)
            if bool(done.all()) or t + 1 == steps:
                break
            if observe is not None:
                state["active"] = ~done
            # One new token: its embedding, its original-count position, both key masks grown by one.
            hidden = lm.get_input_embeddings()(token[:, None])
            step_positions = _step_positions(inputs.positions, next_position + t)
            rotary = arch.position_embeddings(lm, hidden, step_positions)
            grown = torch.ones(batch, 1, dtype=torch.bool, device=home)
            full_keys = torch.cat([full_keys, grown], 1)
            pruned_keys = torch.cat([pruned_keys, grown], 1) if prune else full_keys
            masks = (additive_mask(full_keys, 1, dtype), additive_mask(pruned_keys, 1, dtype))
            for i, layer in enumerate(layers):
                mask = masks[1] if prune and i >= K else masks[0]
                hidden = layer(hidden, attention_mask=mask, position_embeddings=rotary[i], cache=cache, use_cache=True)
            logits = next_logits(hidden)
    finally:
        for handle in hooks:
            handle.remove()
    run = int(lengths.max())
    return Generation(tokens[:, :run], logprobs[:, :run], lengths, kept)


def _weights(output) -> torch.Tensor:
    weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
    if weights is None:
        raise RuntimeError("attention weights are not returned: load the model with attn_implementation='eager'")
    return weights


def _last(positions: torch.Tensor) -> torch.Tensor:
    """Position id of each sample's last prompt token (left padding: the last column)."""
    return positions[..., -1].amax(0) if positions.dim() == 3 else positions[:, -1]


def _step_positions(positions: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    step = value[:, None]
    return step.unsqueeze(0).expand(positions.shape[0], -1, -1) if positions.dim() == 3 else step
