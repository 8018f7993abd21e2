"""Synthetic swap pairs: one image, two questions that differ only in subject/reference order.

Each image holds two shapes that differ in both colour and shape. Horizontal pairs sit side by
side at one height, vertical pairs one above the other; distance pairs show depth the way a
photograph does: the far object is smaller and higher in the frame. Categories are balanced and
`category` is the original question's answer, as in the upstream TSV.
"""

from __future__ import annotations

import base64
import csv
import random
from pathlib import Path

from vlmflow.core.io import atomic_write, write_json
from vlmflow.data.swap_pairs import AXES, CATEGORIES, COLUMNS, GROUP_OF, OPPOSITE
from vlmflow.synth import scenes

# group -> question template; the subject is {a}, the reference {b}.
TEMPLATES: dict[str, str] = {
    "horizontal": "Is the {a} to the left or right of the {b}?",
    "vertical": "Is the {a} above or under the {b}?",
    "distance": "Is the {a} far or close compared to the {b}?",
}
QUESTION_ID_OFFSET = {"train": 100_000, "val": 900_000}


def _layout(category: str, rng: random.Random, size: int) -> tuple[tuple, tuple]:
    """Boxes (subject, reference) such that the subject is `category` of the reference."""
    side = round(size * rng.uniform(0.22, 0.3))
    lo, hi = size // 20, size - size // 20 - side

    def box(x: int, y: int, s: int = side) -> tuple[int, int, int, int]:
        return (x, y, x + s, y + s)

    group = GROUP_OF[category]
    if group == "horizontal":
        y = rng.randint(lo, hi)
        left_x = rng.randint(lo, size // 2 - side - size // 20)
        right_x = rng.randint(size // 2 + size // 20, hi)
        first, second = box(left_x, y + rng.randint(-3, 3)), box(right_x, y)
    elif group == "vertical":
        x = rng.randint(lo, hi)
        top_y = rng.randint(lo, size // 2 - side - size // 20)
        bottom_y = rng.randint(size // 2 + size // 20, hi)
        first, second = box(x + rng.randint(-3, 3), top_y), box(x, bottom_y)
    else:  # distance: the far one is smaller and higher
        far_side = round(side * 0.5)
        far = box(rng.randint(lo, size - lo - far_side), rng.randint(lo, size // 3 - far_side), far_side)
        near = box(rng.randint(lo, hi), rng.randint(size // 2, hi))
        first, second = far, near
    # `first` is left / above / far; the subject is `first` when the category is that word.
    return (first, second) if category == AXES[group][0] else (second, first)


def _draw(objects: list[tuple[str, str, tuple]], rng: random.Random, size: int) -> bytes:
    image, draw = scenes.new_canvas(size)
    scenes.draw_distractors(draw, rng, size, rng.randint(2, 5))
    for colour, shape, box in objects:
        scenes.draw_shape(draw, shape, scenes.PALETTE[colour], box)
    return scenes.jpeg_bytes(image)


def write_swap_pairs(
    out_path: Path, split: str, n_pairs: int, seed: int, image_size: int = 224, boxes_path: Path | None = None
) -> None:
    """Write the TSV (header row, one pair per row, the image inline as base64 JPEG) and, with
    `boxes_path`, the scenes' bbox cache (`vlmflow.probing.quads`: subject and reference per row)."""
    scenes.check_split(split)
    boxes: dict[str, dict] = {}
    rng = scenes.make_rng(seed, "swap_pairs", split)
    categories = [CATEGORIES[i % len(CATEGORIES)] for i in range(n_pairs)]
    rng.shuffle(categories)
    with atomic_write(out_path) as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(COLUMNS)
        for index, category in enumerate(categories):
            group = GROUP_OF[category]
            (ca, cb), (sa, sb) = rng.sample(scenes.COLOURS, 2), rng.sample(scenes.SHAPES, 2)
            a, b = f"{ca} {sa}", f"{cb} {sb}"
            box_a, box_b = _layout(category, rng, image_size)
            jpeg = _draw([(ca, sa, box_a), (cb, sb, box_b)], rng, image_size)
            template = TEMPLATES[group]
            question_id = QUESTION_ID_OFFSET[split] + index
            boxes[str(question_id)] = {
                "subject": {"name": a, "box": list(box_a)},
                "reference": {"name": b, "box": list(box_b)},
            }
            writer.writerow(
                [
                    index,
                    question_id,
                    base64.b64encode(jpeg).decode("ascii"),
                    template.format(a=a, b=b),
                    template.format(a=b, b=a),
                    category,
                    OPPOSITE[category],
                    category,
                    group,
                ]
            )
    if boxes_path is not None:
        write_json(boxes_path, boxes)
