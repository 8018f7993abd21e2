"""The vision side of the foveated VLM (seed 001, nanoSmol fVLM): a query token looks at a frame.

DINOv2 runs once per frame; at every layer the keys and values of that frame's tokens are cached.
A query token then passes through the encoder's own layers, attending to the cached keys and
values of its frame at each layer ("deep" query), or only at the last layer ("shallow"). The
output is one vector per frame, so the language model sees one visual token per frame whatever
the resolution. Where the query comes from (a learned static query in the coarse pass, the
language model's hidden state in the fine pass) is the caller's business.

The multi-token baseline (the seed's B1) skips the query: the final patch features are average
pooled to a `grid` x `grid` map, `grid**2` tokens per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Dinov2Model


@dataclass
class FrameCache:
    """Per encoder layer the keys and values of every frame's tokens, each (frames, heads, tokens,
    head_dim), and the final normalised patch features (frames, patches, hidden)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    patches: torch.Tensor


def _heads(attention: nn.Module, states: torch.Tensor) -> torch.Tensor:
    """(frames, tokens, hidden) -> (frames, heads, tokens, head_dim)."""
    frames, tokens, _ = states.shape
    return states.view(frames, tokens, attention.num_attention_heads, attention.head_dim).transpose(1, 2)


def encode_frames(vision: Dinov2Model, pixel_values: torch.Tensor) -> FrameCache:
    """Run DINOv2 once over (frames, channels, height, width), keeping each layer's keys and values
    (computed from that layer's normalised input, as the layer itself does)."""
    hidden = vision.embeddings(pixel_values)
    keys, values = [], []
    for layer in vision.encoder.layer:
        normed = layer.norm1(hidden)
        keys.append(_heads(layer.attention, layer.attention.k_proj(normed)))
        values.append(_heads(layer.attention, layer.attention.v_proj(normed)))
        hidden = layer(hidden)
    patches = vision.layernorm(hidden)[:, 1:]  # drop the CLS token
    return FrameCache(keys, values, patches)


def query_frames(
    vision: Dinov2Model, cache: FrameCache, queries: torch.Tensor, deep: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """One output per frame for one query per frame ((frames, hidden) in, (frames, hidden) out),
    and the last layer's attention of each query over its frame's tokens (frames, heads, tokens).

    The query goes through each layer it visits as a token would (norm, attention, layer scale,
    residual, MLP), except that it attends to the frame's cached keys and values instead of the
    current tokens; a shallow query visits the last layer only."""
    layers = list(enumerate(vision.encoder.layer))
    hidden = queries.unsqueeze(1)  # (frames, 1, hidden)
    weights = None
    for index, layer in layers if deep else layers[-1:]:
        attention = layer.attention
        query = _heads(attention, attention.q_proj(layer.norm1(hidden)))
        scores = query @ cache.keys[index].transpose(-1, -2) * attention.scaling
        weights = scores.softmax(dim=-1)
        attended = (weights @ cache.values[index]).transpose(1, 2).reshape(hidden.shape[0], 1, -1)
        hidden = hidden + layer.layer_scale1(attention.o_proj(attended))
        hidden = hidden + layer.layer_scale2(layer.mlp(layer.norm2(hidden)))
    return vision.layernorm(hidden).squeeze(1), weights.squeeze(2)


def pooled_patches(cache: FrameCache, grid: int) -> torch.Tensor:
    """The multi-token baseline: final patch features average-pooled to grid x grid tokens per
    frame, (frames, grid**2, hidden), in row-major order."""
    frames, patches, hidden = cache.patches.shape
    side = int(patches**0.5)
    if side * side != patches:
        raise ValueError(f"{patches} patches per frame do not form a square grid")
    maps = cache.patches.transpose(1, 2).reshape(frames, hidden, side, side)
    return F.adaptive_avg_pool2d(maps, grid).flatten(2).transpose(1, 2)


def attention_entropy(weights: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of attention distributions over their last axis: low when a query
    fixates on few patches, log(tokens) when it looks everywhere alike."""
    return -(weights * weights.clamp_min(1e-12).log()).sum(-1).mean()
