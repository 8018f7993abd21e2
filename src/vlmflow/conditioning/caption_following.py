"""Does a picture show what its caption names? The colour a caption names first (its object's) is
checked against the picture's dominant colour, and the side it names against where that colour
lies.

Each pixel is given the nearest of the named colours or the sky (RGB distance); the dominant
colour is the most frequent named colour, the side is the third of the picture holding the centre
of its pixels. A caption names its object's colour as the first colour word and a side as "on the
left" / "on the right" (none: the centre), as the captioned scenes the tiny Z-Image learns from do.
`following_rates` gives each recipe's shares of pictures that follow (`RATES`).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import polars as pl
from PIL import Image

from vlmflow.synth.captioned_scenes import SCENE_COLOURS, SKY
from vlmflow.synth.scenes import PALETTE

RATES = ("colour_follows_caption", "side_follows_caption", "colour_follows_image")

# (colours + sky, 3) float RGB; the last row is the sky.
_CENTRES = np.array([PALETTE[c] for c in SCENE_COLOURS] + [SKY], dtype=np.float32)
_SIDE = re.compile(r"\bon the (left|right)\b")


def caption_colour(caption: str) -> str | None:
    """The first colour word of a caption (its object's colour), or None if it names none."""
    words = re.findall(r"[a-z]+", caption.lower())
    return next((w for w in words if w in SCENE_COLOURS), None)


def caption_side(caption: str) -> str:
    match = _SIDE.search(caption.lower())
    return match.group(1) if match else "centre"


def colour_map(image: Image.Image) -> np.ndarray:
    """(H, W) index of each pixel's nearest colour: 0.. for SCENE_COLOURS, len(SCENE_COLOURS) for sky."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)  # (H, W, 3)
    distances = ((pixels[:, :, None, :] - _CENTRES[None, None]) ** 2).sum(-1)  # (H, W, colours + 1)
    return distances.argmin(-1)


def dominant_colour(image: Image.Image) -> tuple[str, float]:
    """The most frequent named colour and its share of the picture's pixels."""
    counts = np.bincount(colour_map(image).ravel(), minlength=len(_CENTRES))[: len(SCENE_COLOURS)]
    index = int(counts.argmax())
    return SCENE_COLOURS[index], float(counts[index] / (image.width * image.height))


def colour_side(image: Image.Image, colour: str) -> str | None:
    """Which third of the picture holds the centre of `colour`'s pixels (None if it has none)."""
    columns = np.nonzero(colour_map(image) == SCENE_COLOURS.index(colour))[1]
    if columns.size == 0:
        return None
    third = int(3 * columns.mean() / image.width)
    return ("left", "centre", "right")[min(third, 2)]


def caption_following(image: Image.Image, caption: str) -> dict[str, Any]:
    """The measure of one picture against its caption (metadata.json's per-image fields)."""
    named = caption_colour(caption)
    dominant, share = dominant_colour(image)
    side = colour_side(image, named) if named else None
    return {
        "named_colour": named,
        "dominant_colour": dominant,
        "dominant_share": round(share, 4),
        "colour_follows_caption": named is not None and dominant == named,
        "named_side": caption_side(caption),
        "side_of_named_colour": side,
        "side_follows_caption": side is not None and side == caption_side(caption),
    }


def following_rates(rows: list[dict[str, Any]], recipes: list[str]) -> pl.DataFrame:
    """Per recipe (in config order): the share of pictures that follow their caption's colour and
    side, and the share whose dominant colour is the VLM picture's instead."""
    frame = pl.DataFrame(rows).with_columns(pl.col(list(RATES)).cast(pl.Float64))
    rates = frame.group_by("recipe").agg(pl.len().alias("n"), *[pl.col(r).mean() for r in RATES])
    order = pl.DataFrame({"recipe": recipes, "order": list(range(len(recipes)))})
    return rates.join(order, on="recipe").sort("order").drop("order")
