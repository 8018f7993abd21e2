"""Synthetic TextVQA 0.5.1: a coloured sign with one big word, in the upstream JSON layout.

Each image gets two questions: what the sign says (one of two phrasings) and its colour. Text is
black on light signs and white on dark ones so the word is always legible.
"""

from __future__ import annotations

import random
from pathlib import Path

from vlmflow.core.io import write_json
from vlmflow.synth import scenes

WORDS: tuple[str, ...] = (
    "STOP", "OPEN", "SALE", "EXIT", "CAFE", "TAXI", "BANK", "HOTEL", "PIZZA", "BUS", "PARK", "GAS",
)  # fmt: skip
WORD_QUESTIONS: tuple[str, ...] = ("What word is written on the sign?", "What does the sign say?")
COLOUR_QUESTION = "What color is the sign?"
LIGHT_SIGNS = frozenset({"yellow", "orange", "white"})
IMAGE_CLASSES: tuple[str, ...] = ("Street sign", "Signage", "Poster", "Building", "Billboard")
# Real TextVQA numbers train questions from 0 and val after them; keep the two ranges apart.
QUESTION_ID_OFFSET = {"train": 0, "val": 10_000_000}


def json_path(out_dir: Path, split: str) -> Path:
    return Path(out_dir) / f"TextVQA_0.5.1_{split}.json"


def image_path(out_dir: Path, image_id: str) -> Path:
    """Real TextVQA keeps train and val images together in train_images/."""
    return Path(out_dir) / "train_images" / f"{image_id}.jpg"


def _draw(word: str, colour: str, rng: random.Random, size: int) -> bytes:
    image, draw = scenes.new_canvas(size)
    scenes.draw_distractors(draw, rng, size, rng.randint(2, 5))
    w = round(size * rng.uniform(0.6, 0.85))
    h = round(size * rng.uniform(0.3, 0.45))
    x0, y0 = (
        rng.randint(size // 20, size - w - size // 20),
        rng.randint(size // 20, size - h - size // 20),
    )
    draw.rectangle((x0, y0, x0 + w, y0 + h), fill=scenes.PALETTE[colour])
    ink = scenes.PALETTE["black" if colour in LIGHT_SIGNS else "white"]
    fnt = scenes.fit_font(word, round(w * 0.85), round(h * 0.7))
    scenes.draw_text_centred(draw, word, (x0 + w / 2, y0 + h / 2), fnt, ink)
    return scenes.jpeg_bytes(image)


def _tokens(question: str) -> list[str]:
    return question.lower().rstrip("?").split()


def write_textvqa(out_dir: Path, split: str, n_images: int, seed: int, image_size: int = 224) -> None:
    """Write TextVQA_0.5.1_{split}.json and the images under train_images/."""
    scenes.check_split(split)
    rng = scenes.make_rng(seed, "textvqa", split)
    out_dir = Path(out_dir)
    data = []
    qid = QUESTION_ID_OFFSET[split]
    for _ in range(n_images):
        image_id = f"{rng.getrandbits(64):016x}"
        word, colour = rng.choice(WORDS), rng.choice(scenes.COLOURS)
        scenes.write_bytes(image_path(out_dir, image_id), _draw(word, colour, rng, image_size))
        classes = rng.sample(IMAGE_CLASSES, 2)
        word_answer = word.lower()
        qa = [
            (rng.choice(WORD_QUESTIONS), word_answer, [w.lower() for w in WORDS if w != word]),
            (COLOUR_QUESTION, colour, [c for c in scenes.COLOURS if c != colour]),
        ]
        for question, answer, wrong in qa:
            data.append(
                {
                    "question": question,
                    "image_id": image_id,
                    "image_classes": classes,
                    "flickr_original_url": "",
                    "flickr_300k_url": "",
                    "image_width": image_size,
                    "image_height": image_size,
                    "answers": scenes.vary_answer(rng, answer, wrong),
                    "question_tokens": _tokens(question),
                    "question_id": qid,
                    "set_name": split,
                }
            )
            qid += 1
    write_json(
        json_path(out_dir, split),
        {
            "dataset_type": split,
            "dataset_name": "textvqa",
            "dataset_version": "0.5.1",
            "data": data,
        },
    )
