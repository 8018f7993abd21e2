"""Captioned scenes for pretraining the VL-conditioning study's tiny Z-Image: one big flat-coloured
object (house, square, circle, triangle) on the left, centre or right, sometimes a sun of another
colour, and a caption naming exactly that ("a red house on the left with a yellow sun").

Written in the Hugging Face `imagefolder` layout the diffusers text-to-image examples read: the
PNGs beside a `metadata.jsonl` of `{"file_name", "text"}` rows, here with the scene's parts too
(`colour`, `object`, `side`, `sun`), which the caption-following measure checks pictures against.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from vlmflow.core.io import atomic_directory, write_jsonl
from vlmflow.synth.scenes import BACKGROUND, PALETTE, draw_shape, make_rng

# Colours a caption names: the palette's, less white and black (too close to the sky and the lines).
SCENE_COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
OBJECTS: tuple[str, ...] = ("house", "square", "circle", "triangle")
SIDES: tuple[str, ...] = ("left", "centre", "right")
SKY = BACKGROUND  # a plain grey, far from every named colour
# The VL-conditioning study's reference picture (the seed's "cartoon house with flat colors"): it
# differs from the default prompt, "a green house with a yellow sun", in colour and side, so a
# picture shows whether it followed the prompt or the picture the VLM saw.
REFERENCE_SCENE = {"colour": "blue", "object": "house", "side": "right", "sun": "yellow"}


def with_article(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def caption(scene: dict[str, Any]) -> str:
    """The caption of a scene: "a red house", "an orange house on the left with a yellow sun"."""
    text = f"{with_article(scene['colour'])} {scene['object']}"
    if scene["side"] != "centre":
        text += f" on the {scene['side']}"
    if scene["sun"] is not None:
        text += f" with {with_article(scene['sun'])} sun"
    return text


def draw_scene(scene: dict[str, Any], size: int) -> Image.Image:
    """The object fills about a third of the picture; the sun sits in the top corner away from it."""
    colour, obj, side, sun = scene["colour"], scene["object"], scene["side"], scene["sun"]
    image = Image.new("RGB", (size, size), SKY)
    draw = ImageDraw.Draw(image)
    width = round(size * 0.56)
    centre = {"left": 0.3, "centre": 0.5, "right": 0.7}[side] * size
    x0, y1 = round(centre - width / 2), round(size * 0.92)
    box = (x0, y1 - width, x0 + width, y1)
    if obj == "house":  # walls below, a roof above, both the named colour
        draw.rectangle((x0, y1 - round(width * 0.62), x0 + width, y1), fill=PALETTE[colour])
        draw.polygon(
            [
                (x0 - 2, y1 - round(width * 0.6)),
                (x0 + width // 2, y1 - width),
                (x0 + width + 2, y1 - round(width * 0.6)),
            ],
            fill=PALETTE[colour],
        )
    else:
        draw_shape(draw, obj, PALETTE[colour], box)
    if sun is not None:
        r = round(size * 0.1)
        cx = round(size * (0.86 if side != "right" else 0.14))
        cy = round(size * 0.14)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=PALETTE[sun])
    return image


def sample_scene(rng: random.Random) -> dict[str, Any]:
    """A scene's parts: every colour, object and side equally likely; a sun in half the scenes."""
    colour = rng.choice(SCENE_COLOURS)
    sun = rng.choice([c for c in SCENE_COLOURS if c != colour]) if rng.random() < 0.5 else None
    return {"colour": colour, "object": rng.choice(OBJECTS), "side": rng.choice(SIDES), "sun": sun}


def captioned_scenes(n: int, seed: int, split: str) -> list[dict[str, Any]]:
    """`n` scenes' parts and captions, a pure function of (seed, split)."""
    rng = make_rng(seed, "captioned_scenes", split)
    scenes = [sample_scene(rng) for _ in range(n)]
    return [{**scene, "text": caption(scene)} for scene in scenes]


def write_captioned_scenes(out_dir: str | Path, n: int, seed: int, split: str, size: int) -> None:
    """Write `n` scenes as an imagefolder (`<i>.png` + `metadata.jsonl`), atomically."""
    with atomic_directory(out_dir) as tmp:
        rows = []
        for i, scene in enumerate(captioned_scenes(n, seed, split)):
            name = f"{i:06d}.png"
            draw_scene(scene, size).save(tmp / name)
            rows.append({"file_name": name, **scene})
        write_jsonl(tmp / "metadata.jsonl", rows)
