"""Drawing primitives shared by the synthetic dataset generators.

Scenes are big, flat-coloured shapes on a plain grey background with a few small darker-grey
distractor discs: every question is answerable from the pixels and a tiny VLM (64 visual tokens)
can learn it. Everything is deterministic: randomness comes from a private RNG keyed by the seed
and the generator/split names, and JPEG encoding uses fixed settings.
"""

from __future__ import annotations

import functools
import hashlib
import io
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from vlmflow.core.io import atomic_write

RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]

# Clearly different colours; none is close to the background or distractor grey.
PALETTE: dict[str, RGB] = {
    "red": (220, 40, 40),
    "green": (40, 170, 70),
    "blue": (40, 80, 220),
    "yellow": (245, 220, 40),
    "purple": (140, 60, 190),
    "orange": (245, 140, 30),
    "white": (250, 250, 250),
    "black": (20, 20, 20),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("square", "circle", "triangle")
BACKGROUND: RGB = (150, 150, 150)
DISTRACTOR: RGB = (110, 110, 110)
NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five")

# The 3x3 grid names Kvasir-VQA uses for locations, row-major.
GRID_NAMES: tuple[str, ...] = (
    "upper-left", "upper-center", "upper-right",
    "center-left", "center", "center-right",
    "lower-left", "lower-center", "lower-right",
)  # fmt: skip

JPEG_QUALITY = 95
SPLITS = ("train", "val")


def make_rng(seed: int, *parts: str) -> random.Random:
    """A private RNG keyed by the seed and names (generator, split), never the global RNG."""
    key = ":".join([str(seed), *parts]).encode()
    return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def new_canvas(size: int, colour: RGB = BACKGROUND) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", (size, size), colour)
    return image, ImageDraw.Draw(image)


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, colour: RGB, box: Box) -> None:
    """Fill `shape` inscribed in `box` (x0, y0, x1, y1); triangles point up."""
    x0, y0, x1, y1 = box
    if shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=colour)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def draw_distractors(draw: ImageDraw.ImageDraw, rng: random.Random, size: int, n: int) -> None:
    """Small grey discs: clutter the model must learn to ignore (drawn first, under the shapes)."""
    r = max(2, round(size * 0.022))
    for _ in range(n):
        x, y = rng.randint(r, size - r - 1), rng.randint(r, size - r - 1)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=DISTRACTOR)


def cell_box(cell: int, size: int) -> Box:
    """The pixel box of cell 0..8 of the 3x3 grid (row-major)."""
    row, col = divmod(cell, 3)
    return (col * size // 3, row * size // 3, (col + 1) * size // 3, (row + 1) * size // 3)


def box_in_cell(rng: random.Random, cell: int, size: int, lo: float = 0.6, hi: float = 0.8) -> Box:
    """A random square box filling `lo`..`hi` of one grid cell, so objects never overlap."""
    cx0, cy0, cx1, cy1 = cell_box(cell, size)
    side = round((cx1 - cx0) * rng.uniform(lo, hi))
    x0 = cx0 + rng.randint(0, cx1 - cx0 - side)
    y0 = cy0 + rng.randint(0, cy1 - cy0 - side)
    return (x0, y0, x0 + side, y0 + side)


def grid_name(x: float, y: float, size: int) -> str:
    """The 3x3 grid name of a pixel position."""
    col = min(2, max(0, int(3 * x / size)))
    row = min(2, max(0, int(3 * y / size)))
    return GRID_NAMES[row * 3 + col]


@functools.cache
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def fit_font(text: str, max_width: int, max_height: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The largest default-font size whose rendering of `text` fits the box."""
    lo, hi = 6, max(7, max_height * 2)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        x0, y0, x1, y1 = font(mid).getbbox(text)
        if x1 - x0 <= max_width and y1 - y0 <= max_height:
            lo = mid
        else:
            hi = mid - 1
    return font(lo)


def draw_text_centred(
    draw: ImageDraw.ImageDraw,
    text: str,
    centre: tuple[float, float],
    fnt: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    fill: RGB,
) -> None:
    """Centre the ink of `text` on `centre` (bbox-based, so it works for any font type)."""
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=fnt)
    draw.text(
        (round(centre[0] - (x0 + x1) / 2), round(centre[1] - (y0 + y1) / 2)),
        text,
        font=fnt,
        fill=fill,
    )


def jpeg_bytes(image: Image.Image) -> bytes:
    """Encode as baseline JPEG with fixed settings: identical images give identical bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def answer_variants(canonical: str) -> list[str]:
    """Spellings annotators use that the official VQA normalisation maps back to `canonical`:
    case, a leading article, a trailing period, number words ("none" counts as 0)."""
    if canonical.isdigit():
        word = NUMBER_WORDS[int(canonical)]
        return [word, word.capitalize(), f"{canonical}."] + (["none"] if canonical == "0" else [])
    if canonical in ("yes", "no"):
        return [canonical.capitalize(), canonical.upper(), f"{canonical}."]
    return [canonical.capitalize(), canonical.upper(), f"{canonical}.", f"the {canonical}"]


def vary_answer(rng: random.Random, canonical: str, wrong: list[str]) -> list[str]:
    """Ten annotator answers: mostly `canonical`, some `answer_variants`, and in about one
    question in ten one genuinely different answer (from `wrong`), so the normalised majority
    is always `canonical`."""
    variants = answer_variants(canonical)
    answers = [canonical if rng.random() < 0.6 else rng.choice(variants) for _ in range(10)]
    if wrong and rng.random() < 0.1:
        answers[rng.randrange(10)] = rng.choice(wrong)
    return answers
