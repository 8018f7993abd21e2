"""Synthetic videos of moving shapes, mixed with single images and text-only chat, for the foveated
VLM (one visual token per frame).

A video is one coloured shape sliding in a straight line across a grey frame past a static grey
distractor disc, so the direction is only readable by comparing frames. Images hold one coloured
shape in one half among grey distractor discs, so every left/right question has one answer. Text
samples keep the language model talking without pixels. Records use one user/assistant JSON shape
for all three kinds; frames are lossless PNGs, so answers can be checked against exact colours.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from vlmflow.core.io import write_jsonl
from vlmflow.synth import scenes

COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow")
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
SIDES: tuple[str, ...] = ("left", "right")
COUNT_WORDS: tuple[str, ...] = (*scenes.NUMBER_WORDS, "six", "seven", "eight", "nine")
REPEAT_WORDS: tuple[str, ...] = (*COLOURS, *scenes.SHAPES)

CAPTION_Q = "Describe the video."
CAPTION_A = "a {colour} {shape} moves {direction}."
DIRECTION_Q = "Which way does the {shape} move?"
MOVER_COLOUR_Q = "What colour is the moving shape?"
COLOUR_Q = "What colour is the {shape}?"
SHAPE_Q = "What shape is the {colour} one?"
SIDE_Q = "Is the {shape} on the left or the right?"
NEXT_Q = "What comes after {word}?"
REPEAT_Q = "Repeat: {w1} {w2}"

# 9 video, 8 image, 3 text in every 20 (45/40/15 %); interleaved so any 8 in a row hold all kinds.
KIND_CYCLE: tuple[str, ...] = tuple({"v": "video", "i": "image", "t": "text"}[c] for c in "vitvivivivitvivivivt")
VIDEO_SOURCES: tuple[str, ...] = ("video_caption", "video_qa")
MIN_IMAGE_SIZE = 32


def png_bytes(image: Image.Image) -> bytes:
    """Lossless and byte-identical for identical images (no timestamps in PIL's PNG writer)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _video(rng: random.Random, size: int, frames: int, source: str) -> tuple[list[Image.Image], str, str]:
    """Frames of one shape moving in equal steps from near one edge to near the other."""
    colour, shape, direction = (
        rng.choice(COLOURS),
        rng.choice(scenes.SHAPES),
        rng.choice(DIRECTIONS),
    )
    side = round(size / 4)
    lo, hi = max(1, size // 16), size - max(1, size // 16) - side
    step = (hi - lo) // (frames - 1)
    if step < 1:
        raise ValueError(f"image_size {size} is too small to move a shape over {frames} frames")
    cross = rng.randint(lo, hi)
    base, draw = scenes.new_canvas(size)
    scenes.draw_distractors(draw, rng, size, 1)
    images = []
    for t in range(frames):
        along = lo + step * t if direction in ("right", "down") else hi - step * t
        x, y = (along, cross) if direction in ("left", "right") else (cross, along)
        image = base.copy()
        scenes.draw_shape(ImageDraw.Draw(image), shape, scenes.PALETTE[colour], (x, y, x + side, y + side))
        images.append(image)
    if source == "video_caption":
        return images, CAPTION_Q, CAPTION_A.format(colour=colour, shape=shape, direction=direction)
    if rng.random() < 0.5:
        return images, DIRECTION_Q.format(shape=shape), direction
    return images, MOVER_COLOUR_Q, colour


def _image(rng: random.Random, size: int) -> tuple[Image.Image, str, str]:
    """One coloured shape in one half (so left/right is unambiguous) among grey distractor discs, and
    one question about it. The foveated model picks each frame's one token before it reads the
    question, so an image question must be answerable from the one object its query finds."""
    colour, shape, half = rng.choice(COLOURS), rng.choice(scenes.SHAPES), rng.randrange(2)
    margin, gap = max(1, size // 16), max(1, size // 20)
    image, draw = scenes.new_canvas(size)
    scenes.draw_distractors(draw, rng, size, rng.randint(1, 3))
    side = round(size * rng.uniform(0.2, 0.28))
    if half == 0:
        x = rng.randint(margin, size // 2 - gap - side)
    else:
        x = rng.randint(size // 2 + gap, size - margin - side)
    y = rng.randint(margin, size - margin - side)
    scenes.draw_shape(draw, shape, scenes.PALETTE[colour], (x, y, x + side, y + side))
    question = rng.choice(("colour", "shape", "side"))
    if question == "colour":
        return image, COLOUR_Q.format(shape=shape), colour
    if question == "shape":
        return image, SHAPE_Q.format(colour=colour), shape
    return image, SIDE_Q.format(shape=shape), SIDES[half]


def _text(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.5:
        index = rng.randrange(len(COUNT_WORDS) - 1)
        return NEXT_Q.format(word=COUNT_WORDS[index]), COUNT_WORDS[index + 1]
    w1, w2 = rng.choice(REPEAT_WORDS), rng.choice(REPEAT_WORDS)
    return REPEAT_Q.format(w1=w1, w2=w2), f"{w1} {w2}"


def write_shape_videos(out_dir: Path, split: str, n: int, *, seed: int, image_size: int, frames: int) -> None:
    """Write `out_dir/<split>.jsonl` and its PNG frames under `out_dir/<split>/<id>/<t>.png`.

    The JSONL is written last, so its presence means every frame it names is in place.
    """
    scenes.check_split(split)
    if frames < 2:
        raise ValueError(f"a video needs at least 2 frames, got {frames}")
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be at least {MIN_IMAGE_SIZE}, got {image_size}")
    out_dir = Path(out_dir)
    rng = scenes.make_rng(seed, "videos", split)
    kinds = [KIND_CYCLE[i % len(KIND_CYCLE)] for i in range(n)]
    rng.shuffle(kinds)
    records: list[dict[str, Any]] = []
    n_videos = 0
    for index, kind in enumerate(kinds):
        sample_id = f"{kind[0]}{index:05d}"
        images: list[Image.Image] = []
        if kind == "video":
            source = VIDEO_SOURCES[n_videos % len(VIDEO_SOURCES)]
            n_videos += 1
            images, user, assistant = _video(rng, image_size, frames, source)
        elif kind == "image":
            source = "image_qa"
            image, user, assistant = _image(rng, image_size)
            images = [image]
        else:
            source = "text"
            user, assistant = _text(rng)
        paths = [f"{split}/{sample_id}/{t}.png" for t in range(len(images))]
        for path, image in zip(paths, images, strict=True):
            scenes.write_bytes(out_dir / path, png_bytes(image))
        records.append(
            {
                "id": sample_id,
                "kind": kind,
                "source": source,
                "frames": paths,
                "user": user,
                "assistant": assistant,
            }
        )
    write_jsonl(out_dir / f"{split}.jsonl", records)


def corpus_lines() -> list[str]:
    """Every user and assistant text the generator can produce (for the tiny model's tokenizer)."""
    lines = [CAPTION_Q, MOVER_COLOUR_Q, *DIRECTIONS, *COLOURS, *scenes.SHAPES, *COUNT_WORDS]
    lines += [
        CAPTION_A.format(colour=c, shape=s, direction=d) for c in COLOURS for s in scenes.SHAPES for d in DIRECTIONS
    ]
    lines += [q.format(shape=s) for q in (DIRECTION_Q, COLOUR_Q, SIDE_Q) for s in scenes.SHAPES]
    lines += [SHAPE_Q.format(colour=c) for c in COLOURS]
    lines += [NEXT_Q.format(word=w) for w in COUNT_WORDS[:-1]]
    pairs = [(w1, w2) for w1 in REPEAT_WORDS for w2 in REPEAT_WORDS]
    lines += [REPEAT_Q.format(w1=w1, w2=w2) for w1, w2 in pairs]
    lines += [f"{w1} {w2}" for w1, w2 in pairs]
    return lines
