"""One scale's swap-pair analysis: the metrics of `vlmflow.probing.metrics` per layer, from the arrays
`vlmflow.probing.extraction.extract_swap_features` writes, in the seed's file layout (`json/`, `csv/`).

Every consistency is computed twice, over all pairs and over the pairs whose original and swapped
questions were both answered correctly (`tag` "all" / "both_correct"): a model that gets a
relation wrong has no reason to encode it consistently.

Centring is per analysis set, the same for every metric and tag: at each layer the mean delta over
all pairs of the scale (all quads, for the cross-group alignment: one mean per delta matrix) is
subtracted, and a tag only chooses which of those centred deltas are scored. So `both_correct` is
a subset of the `all` deltas, and a category's `both_correct` score does not depend on which other
categories the model got right. Each block of the consistency and alignment JSONs and CSVs records
it: `centring` (the description) and `centred_over` (the number of rows the mean was taken over).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from vlmflow.core.io import atomic_write, read_json, write_json
from vlmflow.probing.metrics import (
    category_similarity,
    category_validity,
    cross_group_alignment,
    pred_stats,
    sign_corrected_consistency,
    within_category_consistency,
)

TAGS = ("all", "both_correct")
ALIGNMENT_KEYS = ("per_sample_mean", "per_sample_std", "n", "mean_delta_alignment", "null_mean", "null_std", "p_value")


def _finite(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _clean(block: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (_finite(v) if isinstance(v, float) else v) for k, v in block.items()}


def analyse_scale(
    arrays: Mapping[str, np.ndarray],
    cross: Mapping[str, np.ndarray] | None = None,
    permutations: int = 100,
    seed: int = 0,
    reliable_threshold: float = 0.6,
    min_pairs: int = 2,
) -> dict[str, Any]:
    """pred_stats, category_validity, the category similarity per layer, and per tag the
    within-category and sign-corrected consistency and (given the quads' arrays) the cross-group
    alignment per layer, keyed like the seed's JSON files (`<category>_L<n>`, `<group>_L<n>`, `L<n>`).

    Every metric gets a layer's whole analysis set (all pairs, or all quads) and the tag's rows as
    `keep`, so the deltas are centred by the analysis-set mean whatever the tag; each block carries
    `centring` and `centred_over`. A tag with fewer than `min_pairs` pairs gets no consistency."""
    correct_orig = arrays["correct_orig"].astype(bool)
    correct_swap = arrays["correct_swap"].astype(bool)
    categories = [str(c) for c in arrays["category"]]
    groups = [str(g) for g in arrays["group"]]
    result: dict[str, Any] = {
        "pred_stats": pred_stats(groups, correct_orig, correct_swap),
        "category_validity": category_validity(categories, correct_orig, correct_swap, reliable_threshold),
        "delta_similarity": [
            {"layer": int(layer), "category_a": a, "category_b": b, "mean_cosine": _finite(value)}
            for layer in arrays["layers"]
            for (a, b), value in category_similarity(arrays[f"delta_L{layer}"].astype(np.float64), categories).items()
        ],
    }
    masks = {"all": np.ones(len(categories), dtype=bool), "both_correct": correct_orig & correct_swap}
    for tag in TAGS:
        keep = masks[tag]
        within: dict[str, Any] = {}
        signed: dict[str, Any] = {}
        if keep.sum() >= min_pairs:
            for layer in arrays["layers"]:
                deltas = arrays[f"delta_L{layer}"].astype(np.float64)  # the analysis set: every pair
                scores = within_category_consistency(deltas, categories, keep=keep)
                within |= {f"{c}_L{layer}": _clean(v) for c, v in scores.items()}
                scores = sign_corrected_consistency(deltas, categories, keep=keep)
                signed |= {f"{g}_L{layer}": _clean(v) for g, v in scores.items()}
        result[f"within_cat_consistency_{tag}"] = within
        result[f"sign_corrected_consistency_{tag}"] = signed
    if cross is not None:
        both = cross["correct_vertical"].astype(bool) & cross["correct_distance"].astype(bool)
        for tag, keep in (("all", np.ones(len(both), dtype=bool)), ("both_correct", both)):
            result[f"cross_alignment_{tag}"] = {
                f"L{layer}": _clean(
                    cross_group_alignment(
                        cross[f"delta_vert_L{layer}"].astype(np.float64),  # the analysis set: every quad
                        cross[f"delta_dist_L{layer}"].astype(np.float64),
                        permutations,
                        seed,
                        keep=keep,
                    )
                )
                for layer in cross["layers"]
            }
    return result


def consistency_frame(result: Mapping[str, Any], scale: str) -> pl.DataFrame:
    """The per-layer consistencies as one tidy table: scale, tag, kind, unit, layer, mean, std, n,
    centring, centred_over."""
    rows = []
    for tag in TAGS:
        for kind in ("within_cat_consistency", "sign_corrected_consistency"):
            for key, block in result[f"{kind}_{tag}"].items():
                unit, layer = key.rsplit("_L", 1)
                rows.append(
                    {
                        "scale": scale,
                        "tag": tag,
                        "kind": kind,
                        "unit": unit,
                        "layer": int(layer),
                        "mean": block["mean"],
                        "std": block["std"],
                        "n": block["n"],
                        "centring": block["centring"],
                        "centred_over": block["centred_over"],
                    }
                )
    schema = {
        "scale": pl.String,
        "tag": pl.String,
        "kind": pl.String,
        "unit": pl.String,
        "layer": pl.Int64,
        "mean": pl.Float64,
        "std": pl.Float64,
        "n": pl.Int64,
        "centring": pl.String,
        "centred_over": pl.Int64,
    }
    return pl.DataFrame(rows, schema=schema)


def alignment_frame(result: Mapping[str, Any], scale: str) -> pl.DataFrame:
    """The cross-group alignment per tag and layer as one tidy table (with the centring fields)."""
    rows = [
        {"scale": scale, "tag": tag, "layer": int(key.removeprefix("L")), **block}
        for tag in TAGS
        for key, block in result.get(f"cross_alignment_{tag}", {}).items()
    ]
    schema = (
        {"scale": pl.String, "tag": pl.String, "layer": pl.Int64}
        | {key: pl.Int64 if key == "n" else pl.Float64 for key in ALIGNMENT_KEYS}
        | {"centring": pl.String, "centred_over": pl.Int64}
    )
    return pl.DataFrame(rows, schema=schema)


def write_scale(result: Mapping[str, Any], scale: str, out_dir: str | Path) -> None:
    """json/<name>_<scale>[_<tag>].json as the seed names them, csv/consistency_<scale>.csv,
    csv/delta_similarity_<scale>.csv and csv/cross_alignment_<scale>.csv."""
    out = Path(out_dir)
    write_json(out / "json" / f"pred_stats_{scale}.json", result["pred_stats"])
    write_json(out / "json" / f"category_validity_{scale}.json", result["category_validity"])
    for tag in TAGS:
        for kind in ("within_cat_consistency", "sign_corrected_consistency"):
            write_json(out / "json" / f"{kind}_{scale}_{tag}.json", result[f"{kind}_{tag}"])
    with atomic_write(out / "csv" / f"consistency_{scale}.csv", "wb") as handle:
        consistency_frame(result, scale).write_csv(handle)
    for tag in TAGS:
        write_json(out / "json" / f"cross_alignment_{scale}_{tag}.json", result.get(f"cross_alignment_{tag}", {}))
    with atomic_write(out / "csv" / f"cross_alignment_{scale}.csv", "wb") as handle:
        alignment_frame(result, scale).write_csv(handle)
    similarity = pl.DataFrame(
        result["delta_similarity"],
        schema={"layer": pl.Int64, "category_a": pl.String, "category_b": pl.String, "mean_cosine": pl.Float64},
    )
    with atomic_write(out / "csv" / f"delta_similarity_{scale}.csv", "wb") as handle:
        similarity.write_csv(handle)


SUMMARY_SCHEMA = {
    "scale": pl.String, "model": pl.String, "tag": pl.String, "metric": pl.String, "unit": pl.String,
    "layer": pl.Int64, "value": pl.Float64, "n": pl.Int64,
}  # fmt: skip


def merge_scales(out_dir: str | Path, scales: Mapping[str, str]) -> pl.DataFrame:
    """Every scale's numbers (in `scales` order: scale -> model) as one tidy table: accuracies per
    group and category, consistencies and cross-group alignment per layer, read back from the
    per-scale files `write_scale` wrote."""
    out = Path(out_dir)
    frames = []
    for scale, model in scales.items():
        rows = []
        for unit, block in read_json(out / "json" / f"pred_stats_{scale}.json").items():
            for metric in ("orig_accuracy", "swap_accuracy", "both_accuracy"):
                rows.append({"tag": "all", "metric": metric, "unit": unit, "value": block[metric], "n": block["n"]})
        for unit, block in read_json(out / "json" / f"category_validity_{scale}.json").items():
            rows.append(
                {"tag": "all", "metric": "category_accuracy", "unit": unit, "value": block["accuracy"], "n": block["n"]}
            )
        consistency = pl.read_csv(out / "csv" / f"consistency_{scale}.csv", schema_overrides={"scale": pl.String})
        rows += [
            {
                "tag": r["tag"],
                "metric": r["kind"],
                "unit": r["unit"],
                "layer": r["layer"],
                "value": r["mean"],
                "n": r["n"],
            }
            for r in consistency.iter_rows(named=True)
        ]
        alignment = pl.read_csv(out / "csv" / f"cross_alignment_{scale}.csv", schema_overrides={"scale": pl.String})
        for r in alignment.iter_rows(named=True):
            for metric, key in (("cross_alignment", "per_sample_mean"), ("cross_alignment_p", "p_value"),
                                ("mean_delta_alignment", "mean_delta_alignment")):  # fmt: skip
                rows.append(
                    {
                        "tag": r["tag"],
                        "metric": metric,
                        "unit": "quads",
                        "layer": r["layer"],
                        "value": r[key],
                        "n": r["n"],
                    }
                )
        frames.append(
            pl.DataFrame([{"scale": scale, "model": model, "layer": None} | row for row in rows], schema=SUMMARY_SCHEMA)
        )
    return pl.concat(frames) if frames else pl.DataFrame(schema=SUMMARY_SCHEMA)
