"""Where a video's moving object is, from its frames alone, and how much query attention lands there.

With a still camera, a pixel that differs in one frame from the same pixel in every other frame
shows something there in that frame only: the moving object, wherever it does not overlap its own
position in another frame (for the synthetic shapes, which move about their own size per frame,
all but a thin strip). A patch is on the mover in a frame when at least a quarter of its pixels
are. The query's patch attention on those patches, against the share of patches they are (what
attention spread evenly would give), says whether the heatmaps follow the moving object: a lift
of 1 is no better than uniform. No box or label is needed, so it holds for any still-camera video.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MIN_FRAMES = 3  # with two, the mover's old and new places look alike: each differs from the other frame
MOVING_THRESHOLD = 0.5  # a pixel differs when a channel does by more, in the processor's normalised units
PATCH_COVER = 0.25  # share of a patch's pixels that must move for the patch to count as moving


def moving_patches(frames: torch.Tensor, grid: int) -> torch.Tensor:
    """One video's frames (frames, channels, height, width), normalised as the encoder sees them,
    -> (frames, grid * grid) bool in row-major patch order: the patches the mover covers."""
    count = frames.shape[0]
    if count < MIN_FRAMES:
        raise ValueError(f"telling the mover from what it uncovers needs at least {MIN_FRAMES} frames, got {count}")
    differs = (frames[:, None] - frames[None]).abs().amax(dim=2) > MOVING_THRESHOLD  # (frames, frames, h, w)
    itself = torch.eye(count, dtype=torch.bool, device=frames.device)[:, :, None, None]
    differs |= itself  # a frame is not compared with itself
    moving = differs.all(dim=1)  # (frames, height, width): unlike every other frame
    cover = F.adaptive_avg_pool2d(moving.float().unsqueeze(1), grid).flatten(1)  # (frames, grid * grid)
    return cover >= PATCH_COVER


def mover_attention(weights: torch.Tensor, moving: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame with a moving patch: the share of the query's patch attention on the moving
    patches, and the share of patches that move. `weights` (frames, heads, 1 CLS + patches) is
    averaged over heads, the CLS token dropped and the rest renormalised; `moving` is
    (frames, patches) from `moving_patches`."""
    patches = weights.shape[-1] - 1
    if math.isqrt(patches) ** 2 != patches or moving.shape != (weights.shape[0], patches):
        raise ValueError(
            f"attention over {weights.shape[-1]} tokens does not match moving patches {tuple(moving.shape)}"
        )
    patch_attention = weights.float().mean(dim=1)[:, 1:]  # (frames, patches)
    patch_attention = patch_attention / patch_attention.sum(dim=-1, keepdim=True)
    has_mover = moving.any(dim=-1)  # (frames,)
    mass = (patch_attention * moving).sum(dim=-1)[has_mover]
    share = moving.float().mean(dim=-1)[has_mover]
    return mass, share
