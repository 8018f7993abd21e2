"""Read TextVQA 0.5.1 JSON into records."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from vlmflow.core.records import Record
from vlmflow.data.common import (
    check_unique,
    image_path,
    load_json,
    locate_images,
    require,
    require_str_list,
    verify_images,
)


def read_textvqa(
    json_path: Path,
    images_dir: Path,
    dataset: str,
    check_images: bool = True,
    only: Collection[str] | None = None,
) -> list[Record]:
    """One record per entry of `data`; the image is `images_dir/{image_id}.jpg` (upstream keeps
    train and val images together in train_images/), or when that is missing the one file of that
    stem with another suffix Pillow reads (`locate_images`). An `image_id` that would lead out of
    `images_dir` (`..`, a separator, an absolute path) is an `InputError`."""
    json_path, images_dir = Path(json_path), Path(images_dir)
    entries = require(load_json(json_path), "data", list, json_path, "top level")
    records, ids = [], []
    for i, entry in enumerate(entries):
        qid = entry.get("question_id") if isinstance(entry, dict) else None
        rec = f"question_id {qid}" if isinstance(qid, int) else f"data[{i}]"
        qid = require(entry, "question_id", int, json_path, rec)
        image_id = require(entry, "image_id", str, json_path, rec)
        records.append(
            Record(
                question_id=str(qid),
                image=image_path(images_dir, f"{image_id}.jpg", json_path, rec, "image_id"),
                question=require(entry, "question", str, json_path, rec),
                answers=require_str_list(entry, "answers", json_path, rec),
                dataset=dataset,
                source={
                    "image_id": image_id,
                    "question_id": qid,
                    "set_name": entry.get("set_name"),
                },
            )
        )
        ids.append(records[-1].question_id)
    check_unique(ids, json_path, [f"data[{i}]" for i in range(len(ids))])
    records = locate_images(records, only)
    if check_images:
        verify_images([r for r in records if only is None or r.question_id in only])
    return records
