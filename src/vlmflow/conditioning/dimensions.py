"""Per-dimension comparison of a VLM's hidden states with the reference text encoder's (seed 003).

The seed found Qwen3-VL's text tokens at 0.999 per-dimension std correlation with Qwen3-4B while
its image tokens carry outlier dimensions (617x the median std in dim 396). This measures both,
for every layer of the VLM and each token type, pooling the tokens of several prompts read with
the reference image: the std, the correlation of the per-dimension stds with the reference
encoder's (its Z-Image layer, on the same prompts), how many dimensions pass the outlier ratio,
and the top dimensions by ratio.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import torch

from vlmflow.conditioning.recipe import Encoders, VLSource
from vlmflow.conditioning.stats import global_std, outlier_dimensions, std_correlation


def dimension_tables(
    encoders: Encoders,
    prompts: Sequence[str],
    outlier_ratio: float = 10.0,
    top_k: int = 5,
    reference_layer: int = -2,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(layers, outliers): one row per (layer, token type) with its std, the reference's std,
    the std correlation and the outlier count; one row per (layer, token type, rank) with the
    dimension and its ratio. Layers are negative indices into `hidden_states` (-1 the last)."""
    if not prompts:
        raise ValueError("the dimension analysis needs at least one prompt")
    reference = torch.cat([encoders.reference(p, reference_layer) for p in prompts])
    n_layers = len(encoders.forward(prompts[0], True)[0])
    layer_rows, outlier_rows = [], []
    for layer in range(-1, -n_layers - 1, -1):
        for selection in ("full", "image_only", "text_only"):
            source = VLSource(token_selection=selection, hidden_layer=layer, use_image=True)
            hidden = torch.cat([encoders.vl(source, p) for p in prompts])
            dims, ratios = outlier_dimensions(hidden, outlier_ratio)
            layer_rows.append(
                {
                    "layer": layer,
                    "token_type": selection,
                    "tokens": hidden.shape[0],
                    "std": global_std(hidden),
                    "reference_std": global_std(reference),
                    "std_correlation": std_correlation(hidden, reference),
                    "outlier_dims": int(dims.numel()),
                    "max_ratio": float(ratios.max()),
                }
            )
            top = torch.topk(ratios, min(top_k, ratios.numel()))
            outlier_rows += [
                {
                    "layer": layer,
                    "token_type": selection,
                    "rank": rank + 1,
                    "dim": int(dim),
                    "ratio": float(r),
                }
                for rank, (r, dim) in enumerate(zip(top.values, top.indices))
            ]
    return pl.DataFrame(layer_rows), pl.DataFrame(outlier_rows)
