"""Control copies of a cached dataset: the same records with every image blanked.

A blank-image control asks the same model the same questions about uniform grey images of the
original sizes. What a model still answers right comes from the question's wording or its priors,
not from the pixels; the gap to the real images is the part that does. The control's records keep
their question ids, answers and types, so the same scorer compares the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from PIL import Image

from vlmflow.core.errors import InputError
from vlmflow.core.records import Record, image_file_stamp

CONTROLS = ("blank_image",)
BLANK_GREY = (128, 128, 128)  # uniform mid-grey: no edges, no colour, no text


def image_sizes(records: Sequence[Record]) -> list[tuple[int, int]]:
    """Each record's image size, reading each distinct image's header once."""
    sizes: dict[str, tuple[int, int]] = {}
    for record in records:
        if record.image not in sizes:
            try:
                with Image.open(record.image) as image:
                    sizes[record.image] = image.size
            except (OSError, ValueError) as err:
                raise InputError(
                    record.image, f"cannot read image ({err})", record=record.question_id, field="image"
                ) from err
    return [sizes[record.image] for record in records]


def blank_name(size: tuple[int, int]) -> str:
    return f"blank-{size[0]}x{size[1]}.png"


def write_blank_images(sizes: Sequence[tuple[int, int]], images_dir: Path) -> None:
    """One blank PNG per distinct image size in `images_dir`."""
    for size in sorted(set(sizes)):
        Image.new("RGB", size, BLANK_GREY).save(images_dir / blank_name(size))


def blank_image_records(records: Sequence[Record], sizes: Sequence[tuple[int, int]], images_dir: Path) -> list[Record]:
    """The records with each image replaced by the blank image of its size in `images_dir`
    (each blank file stamped once)."""
    stamps = {size: image_file_stamp(images_dir / blank_name(size)) for size in set(sizes)}
    return [
        replace(record, image=str(images_dir / blank_name(size)), image_file=stamps[size])
        for record, size in zip(records, sizes, strict=True)
    ]
