"""Read the swap-pair TSV (seed 004) into records: two per row, original and swapped question.

The hidden-state analysis pairs them back up by `source["pair_id"]` and `source["role"]`.
"""

from __future__ import annotations

import base64
import binascii
import csv
from collections.abc import Collection
from pathlib import Path

from vlmflow.core.errors import InputError
from vlmflow.core.records import Record
from vlmflow.data.common import (
    check_unique,
    image_path,
    read_delimited,
    staged_folder,
    verify_image_bytes,
    write_extracted_image,
)

COLUMNS: tuple[str, ...] = (
    "index", "question_id", "image_base64", "original_question", "swapped_question",
    "original_answer", "swapped_answer", "category", "group",
)  # fmt: skip
# group -> its two answer words; the first is "left / above / far".
AXES: dict[str, tuple[str, str]] = {
    "horizontal": ("left", "right"),
    "vertical": ("above", "under"),
    "distance": ("far", "close"),
}
CATEGORIES: tuple[str, ...] = tuple(w for pair in AXES.values() for w in pair)
GROUP_OF: dict[str, str] = {w: g for g, pair in AXES.items() for w in pair}
OPPOSITE: dict[str, str] = {a: b for a, b in AXES.values()} | {b: a for a, b in AXES.values()}
# Inline base64 images exceed csv's default 128 KiB field limit.
_FIELD_LIMIT = 1 << 30


def _rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) pairs; the header must name every column and rows must match it."""
    csv.field_size_limit(_FIELD_LIMIT)
    return read_delimited(path, "\t", COLUMNS)


def read_swap_pairs(
    tsv_path: Path,
    images_out_dir: Path | None,
    dataset: str,
    check_images: bool = True,
    only: Collection[str] | None = None,
) -> list[Record]:
    """Two records per row (`{question_id}_orig`, `{question_id}_swap`); the image is decoded
    once per row to `images_out_dir/{question_id}.jpg` (skipped, image "", when it is None).
    Nothing is written until every row has been validated; with `only` (question ids), images
    are checked and written for the rows of those records alone. A `question_id` must be a plain
    file name (no `..`, separator or absolute path). The images go to a temporary folder that
    replaces `images_out_dir` as a whole once all are written; on error it is left as it was."""
    tsv_path = Path(tsv_path)
    records: list[Record] = []
    images: dict[str, bytes] = {}
    pair_ids, lines = [], []
    for line, row in _rows(tsv_path):
        qid = row["question_id"].strip()
        rec = f"line {line} (question_id {qid})"
        if not qid:
            raise InputError(tsv_path, "empty value", record=f"line {line}", field="question_id")
        image = image_path(images_out_dir, f"{qid}.jpg", tsv_path, f"line {line}", "question_id")
        try:
            index = int(row["index"])
        except ValueError as err:
            raise InputError(tsv_path, f"expected an integer, got {row['index']!r}", record=rec, field="index") from err
        category, group = row["category"].strip(), row["group"].strip()
        if category not in GROUP_OF:
            raise InputError(
                tsv_path,
                f"unknown category {category!r} (expected one of {', '.join(CATEGORIES)})",
                record=rec,
                field="category",
            )
        if group != GROUP_OF[category]:
            raise InputError(
                tsv_path,
                f"group {group!r} does not match category {category!r} (expected {GROUP_OF[category]!r})",
                record=rec,
                field="group",
            )
        for key in ("original_question", "swapped_question", "original_answer", "swapped_answer"):
            if not row[key].strip():
                raise InputError(tsv_path, "empty value", record=rec, field=key)
        try:
            data = base64.b64decode(row["image_base64"], validate=True)
        except (binascii.Error, ValueError) as err:
            raise InputError(tsv_path, f"undecodable base64 ({err})", record=rec, field="image_base64") from err
        selected = only is None or f"{qid}_orig" in only or f"{qid}_swap" in only
        if check_images and selected:
            verify_image_bytes(data, tsv_path, rec, "image_base64")
        if images_out_dir is not None and selected:
            images[f"{qid}.jpg"] = data
        for role, question, answer, qtype in (
            ("orig", row["original_question"], row["original_answer"], category),
            ("swap", row["swapped_question"], row["swapped_answer"], OPPOSITE[category]),
        ):
            records.append(
                Record(
                    question_id=f"{qid}_{role}",
                    image=image,
                    question=question,
                    answers=[answer],
                    dataset=dataset,
                    question_type=qtype,
                    answer_type=None,
                    candidates=list(AXES[group]),
                    source={
                        "index": index,
                        "pair_id": qid,
                        "role": role,
                        "category": category,
                        "group": group,
                    },
                )
            )
        pair_ids.append(qid)
        lines.append(f"line {line}")
    check_unique(pair_ids, tsv_path, lines)
    if images_out_dir is not None:
        with staged_folder(Path(images_out_dir)) as staging:
            for name, data in images.items():
                write_extracted_image(staging / name, data, tsv_path)
    return records
