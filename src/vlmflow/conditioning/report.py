"""The VL-conditioning study's rows of `results/summary.csv`: per image, how its embeddings
compare with the reference encoder's and how far its picture moved; per recipe, how often its
pictures follow their captions; per layer and token type, the per-dimension std correlation and
the largest outlier ratio."""

from __future__ import annotations

from typing import Any

import polars as pl

from vlmflow.conditioning.caption_following import RATES

IMAGE_METRICS = (
    "blended_std",
    "vl_std",
    "std_correlation",
    "cosine_to_reference",
    "pixel_distance_to_reference",
    "colour_follows_caption",
    "colour_follows_image",
    "generation_time",
)
FAMILY = "conditioning"


def summary_row(experiment: str, model: str, n: int, n_of: str, metric: str, value: float, source: str,
                kind: str = "result") -> dict[str, Any]:  # fmt: skip
    """One row of the study in the summary's columns."""
    return {
        "experiment": f"conditioning.{experiment}",
        "family": FAMILY,
        "model": model,
        "dataset": None,
        "n": n,
        "n_of": n_of,
        "metric": metric,
        "kind": kind,
        "value": float(value),
        "source": source,
    }


def image_rows(experiment: str, model: str, metadata: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """One row per image and metric (`<image>/<metric>`), n the conditioning's token count."""
    return [
        summary_row(
            experiment,
            model,
            entry["blended_shape"][0],
            "tokens",
            f"{entry['name']}/{metric}",
            entry[metric],
            source,
            kind="timing" if metric == "generation_time" else "result",
        )
        for entry in metadata["results"]
        for metric in IMAGE_METRICS
        if entry.get(metric) is not None
    ]


def following_rows(model: str, rates: pl.DataFrame, source: str) -> list[dict[str, Any]]:
    """One row per recipe and rate (`<recipe>/<rate>`), n the captions."""
    return [
        summary_row("caption_following", model, row["n"], "captions", f"{row['recipe']}/{rate}", row[rate], source)
        for row in rates.iter_rows(named=True)
        for rate in RATES
    ]


def dimension_rows(model: str, layers: pl.DataFrame, source: str) -> list[dict[str, Any]]:
    """One row per layer, token type and statistic (`<statistic>/token_type=<t>/layer=<l>`)."""
    return [
        summary_row(
            "dimensions",
            model,
            row["tokens"],
            "tokens",
            f"{metric}/token_type={row['token_type']}/layer={row['layer']}",
            row[metric],
            source,
        )
        for row in layers.iter_rows(named=True)
        for metric in ("std_correlation", "std", "max_ratio", "outlier_dims")
    ]
