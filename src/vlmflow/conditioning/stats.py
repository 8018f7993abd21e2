"""Making a VLM's hidden states look like a text encoder's (seed 003, VL conditioning).

A diffusion transformer trained on one text encoder's embeddings (Z-Image: Qwen3-4B's
`hidden_states[-2]`) expects their scale. A VLM of the same width is close on its text tokens
but differs in global std by layer, and its image tokens carry a few outlier dimensions hundreds
of times wider than the median one. These functions measure and correct that, on (tokens, dim)
tensors: std matching (`global` or `per_dim`), outlier dimensions (found by the ratio of a
dimension's std to the median dimension's) and what to do with them, and blending with the
reference encoder's embeddings.
"""

from __future__ import annotations

import torch

NORMALISATIONS = ("none", "global", "per_dim")
OUTLIER_HANDLING = ("none", "zero", "clamp", "scale")
EPS = 1e-6


def global_std(hidden: torch.Tensor) -> float:
    """The std of every value of a tensor (population std, as the normalisation matches it)."""
    return float(hidden.float().std(unbiased=False))


def dimension_std(hidden: torch.Tensor) -> torch.Tensor:
    """Each dimension's std over the tokens of a (tokens, dim) tensor."""
    return hidden.float().std(dim=0, unbiased=False)


def normalise(hidden: torch.Tensor, mode: str, target_std: float) -> torch.Tensor:
    """`global`: one factor so the whole tensor's std is `target_std` (the shape across dimensions
    is kept); `per_dim`: every dimension centred and scaled to unit std, then to `target_std`
    (the outliers are gone, so is the encoder's own shape); `none`: unchanged."""
    if mode not in NORMALISATIONS:
        raise ValueError(f"normalization mode must be one of {NORMALISATIONS}, got {mode!r}")
    if mode == "none":
        return hidden
    x = hidden.float()
    if mode == "global":
        return (x * (target_std / (global_std(x) + EPS))).to(hidden.dtype)
    unit = (x - x.mean(dim=0)) / (dimension_std(x) + EPS)
    return (unit * target_std).to(hidden.dtype)


def outlier_dimensions(hidden: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Dimensions whose std is more than `ratio` times the median dimension's std, and every
    dimension's ratio (so a report can list the top ones, as the seed's 617x in dim 396)."""
    std = dimension_std(hidden)
    ratios = std / (std.median() + EPS)
    return torch.nonzero(ratios > ratio).flatten(), ratios


def handle_outliers(hidden: torch.Tensor, ratio: float, mode: str) -> torch.Tensor:
    """Treat the outlier dimensions (`outlier_dimensions`), leaving every other one as it is:
    `zero` sets them to 0, `clamp` clips them to ±`ratio` times the median dimension std around
    their mean, `scale` divides them by their ratio (their std becomes the median's); `none`
    returns the input."""
    if mode not in OUTLIER_HANDLING:
        raise ValueError(f"outlier handling must be one of {OUTLIER_HANDLING}, got {mode!r}")
    dims, ratios = outlier_dimensions(hidden, ratio)
    if mode == "none" or dims.numel() == 0:
        return hidden
    x = hidden.float().clone()
    columns = x[:, dims]
    if mode == "zero":
        columns = torch.zeros_like(columns)
    elif mode == "clamp":
        bound = ratio * dimension_std(x).median()
        centre = columns.mean(dim=0)
        columns = torch.maximum(torch.minimum(columns, centre + bound), centre - bound)
    else:
        centre = columns.mean(dim=0)
        columns = centre + (columns - centre) / ratios[dims]
    x[:, dims] = columns
    return x.to(hidden.dtype)


def blend(vl: torch.Tensor, reference: torch.Tensor, alpha: float) -> torch.Tensor:
    """alpha·VL + (1 − alpha)·reference, token by token. Sequences of different lengths are cut to
    the shorter one (the leading tokens align: both come from the same chat template and prompt);
    alpha 1 or 0 returns that side whole."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if vl.shape[-1] != reference.shape[-1]:
        raise ValueError(f"cannot blend widths {vl.shape[-1]} and {reference.shape[-1]}: the encoders differ")
    if alpha == 1.0:
        return vl
    if alpha == 0.0:
        return reference
    length = min(vl.shape[0], reference.shape[0])
    return alpha * vl[:length].float() + (1 - alpha) * reference[:length].float()


def std_correlation(hidden: torch.Tensor, reference: torch.Tensor) -> float:
    """Pearson correlation of the per-dimension stds of two (tokens, dim) tensors: how alike the
    two encoders spread their dimensions (the seed: 0.999 for VL text tokens vs Qwen3-4B)."""
    a, b = dimension_std(hidden), dimension_std(reference)
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])
