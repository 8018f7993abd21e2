"""Read Kvasir-VQA (the Hugging Face parquet: image, source, question, answer, img_id) into records.

Upstream has no question id, so one is derived that is stable across runs and row orders:
`{img_id}_{sha1(question)[:8]}` (each image is asked each question at most once).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from pathlib import Path

from vlmflow.core.errors import InputError
from vlmflow.core.records import Record
from vlmflow.data.common import check_unique, image_path, staged_folder, verify_image_bytes, write_extracted_image
from vlmflow.data.tables import TableFile, holds_image_bytes, image_cell, open_table, require_columns

TEXT_COLUMNS: tuple[str, ...] = ("source", "question", "answer", "img_id")


def kvasir_question_id(img_id: str, question: str) -> str:
    return f"{img_id}_{hashlib.sha1(question.encode('utf-8')).hexdigest()[:8]}"


def _open(path: Path) -> TableFile:
    table = open_table(path, "parquet")
    require_columns(table, ("image", *TEXT_COLUMNS))
    kind = table.schema.field("image").type
    if not holds_image_bytes(kind):
        raise InputError(path, f"expected struct{{bytes, path}} or binary, got {kind}", field="image")
    return table


def read_kvasir(
    parquet_path: Path,
    images_out_dir: Path | None,
    dataset: str,
    check_images: bool = True,
    only: Collection[str] | None = None,
) -> list[Record]:
    """One record per row, answers=[answer] (possibly ';'-separated). Each img_id's image bytes
    (from its first row) are written once to `images_out_dir/{img_id}.jpg`; with None, nothing
    is extracted and image is "". With `only` (question ids), images are checked and extracted
    for those records alone.

    The text columns are validated first, and every `img_id` must be a plain file name (no
    `..`, separator or absolute path: the image must land inside `images_out_dir`). Images are
    extracted into a temporary folder that replaces `images_out_dir` only when every one decoded:
    on any error `images_out_dir` is left as it was (absent stays absent), and on success it holds
    exactly the extracted images."""
    path = Path(parquet_path)
    table = _open(path)
    records: list[Record] = []
    first_row: dict[str, int] = {}
    for i, row in enumerate(table.rows(list(TEXT_COLUMNS))):
        for column in TEXT_COLUMNS:
            if not isinstance(row[column], str):
                raise InputError(
                    path,
                    f"expected a string, got {type(row[column]).__name__}",
                    record=f"row {i}",
                    field=column,
                )
        img_id = row["img_id"]
        first_row.setdefault(img_id, i)
        image = image_path(images_out_dir, f"{img_id}.jpg", path, f"row {i}", "img_id")
        records.append(
            Record(
                question_id=kvasir_question_id(img_id, row["question"]),
                image=image,
                question=row["question"],
                answers=[row["answer"]],
                dataset=dataset,
                source={"img_id": img_id, "source": row["source"], "row": i},
            )
        )
    check_unique([r.question_id for r in records], path, [f"row {i}" for i in range(len(records))])
    wanted = {r.source["img_id"] for r in records if only is None or r.question_id in only}
    if images_out_dir is not None:
        with staged_folder(Path(images_out_dir)) as staging:
            _extract_images(table, records, first_row, wanted, staging, check_images)
    elif check_images:
        _extract_images(table, records, first_row, wanted, None, check_images)
    return records


def _extract_images(
    table: TableFile,
    records: list[Record],
    first_row: dict[str, int],
    wanted: set[str],
    images_out_dir: Path | None,
    check_images: bool,
) -> None:
    """Stream the image column, so only one batch of image bytes is in memory at a time; each
    wanted image is checked (decoded in full) and written as `images_out_dir/{img_id}.jpg`."""
    path = table.path
    for i, row in enumerate(table.rows(["image"])):
        img_id = records[i].source["img_id"]
        if first_row[img_id] != i or img_id not in wanted:
            continue
        data, _ = image_cell(row["image"])
        rec = f"row {i} (question_id {records[i].question_id})"
        if not data:
            raise InputError(path, "no image bytes", record=rec, field="image")
        if check_images:
            verify_image_bytes(data, path, rec, "image")
        if images_out_dir is not None:
            write_extracted_image(images_out_dir / f"{img_id}.jpg", data, path)
