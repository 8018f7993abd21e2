"""One scale's swap-pair analysis: the metrics of `vlmflow.swap_metrics` per layer, from the arrays
`vlmflow.probing.extract_swap_features` writes, in the seed's file layout (`json/`, `csv/`).

Every consistency is computed twice, over all pairs and over the pairs whose original and swapped
questions were both answered correctly (`tag` "all" / "both_correct"): a model that gets a
relation wrong has no reason to encode it consistently.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from vlmflow.io import atomic_write, write_json
from vlmflow.swap_metrics import (
    category_validity,
    pred_stats,
    sign_corrected_consistency,
    within_category_consistency,
)

TAGS = ("all", "both_correct")


def _finite(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _clean(block: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (_finite(v) if isinstance(v, float) else v) for k, v in block.items()}


def analyse_scale(arrays: Mapping[str, np.ndarray], min_pairs: int = 2) -> dict[str, Any]:
    """pred_stats, category_validity, and per tag the within-category and sign-corrected
    consistency per layer, keyed like the seed's JSON files (`<category>_L<n>`, `<group>_L<n>`)."""
    correct_orig = arrays["correct_orig"].astype(bool)
    correct_swap = arrays["correct_swap"].astype(bool)
    categories = [str(c) for c in arrays["category"]]
    groups = [str(g) for g in arrays["group"]]
    result: dict[str, Any] = {
        "pred_stats": pred_stats(groups, correct_orig, correct_swap),
        "category_validity": category_validity(categories, correct_orig, correct_swap),
    }
    masks = {"all": np.ones(len(categories), dtype=bool), "both_correct": correct_orig & correct_swap}
    for tag in TAGS:
        keep = masks[tag]
        within: dict[str, Any] = {}
        signed: dict[str, Any] = {}
        if keep.sum() >= min_pairs:
            chosen = [c for c, k in zip(categories, keep) if k]
            for layer in arrays["layers"]:
                deltas = arrays[f"delta_L{layer}"][keep].astype(np.float64)
                within |= {f"{c}_L{layer}": _clean(v) for c, v in within_category_consistency(deltas, chosen).items()}
                signed |= {f"{g}_L{layer}": _clean(v) for g, v in sign_corrected_consistency(deltas, chosen).items()}
        result[f"within_cat_consistency_{tag}"] = within
        result[f"sign_corrected_consistency_{tag}"] = signed
    return result


def consistency_frame(result: Mapping[str, Any], scale: str) -> pl.DataFrame:
    """The per-layer consistencies as one tidy table: scale, tag, kind, unit, layer, mean, std, n."""
    rows = []
    for tag in TAGS:
        for kind in ("within_cat_consistency", "sign_corrected_consistency"):
            for key, block in result[f"{kind}_{tag}"].items():
                unit, layer = key.rsplit("_L", 1)
                rows.append({"scale": scale, "tag": tag, "kind": kind, "unit": unit, "layer": int(layer),
                             "mean": block["mean"], "std": block["std"], "n": block["n"]})
    schema = {"scale": pl.String, "tag": pl.String, "kind": pl.String, "unit": pl.String, "layer": pl.Int64,
              "mean": pl.Float64, "std": pl.Float64, "n": pl.Int64}
    return pl.DataFrame(rows, schema=schema)


def write_scale(result: Mapping[str, Any], scale: str, out_dir: str | Path) -> None:
    """json/<name>_<scale>[_<tag>].json as the seed names them, and csv/consistency_<scale>.csv."""
    out = Path(out_dir)
    write_json(out / "json" / f"pred_stats_{scale}.json", result["pred_stats"])
    write_json(out / "json" / f"category_validity_{scale}.json", result["category_validity"])
    for tag in TAGS:
        for kind in ("within_cat_consistency", "sign_corrected_consistency"):
            write_json(out / "json" / f"{kind}_{scale}_{tag}.json", result[f"{kind}_{tag}"])
    with atomic_write(out / "csv" / f"consistency_{scale}.csv", "wb") as handle:
        consistency_frame(result, scale).write_csv(handle)
