"""Read flat question files, JSON lines and CSV, whose rows name their image file, into records.

Each line (JSONL) or row (CSV) is one question with the fields of `vlmflow.data.columns`. The
image is a path to any file Pillow reads, relative to the question file's folder unless absolute;
records point at it in place. Without a question id column, a record's id is its line number.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from vlmflow.core.errors import InputError
from vlmflow.core.records import Record
from vlmflow.data.columns import Columns, read_fields
from vlmflow.data.common import check_unique, read_delimited, reading_text, verify_listed_image

# Between the answers of one CSV cell: "red|dark red" is two answers.
CSV_ANSWER_SEPARATOR = "|"


def read_jsonl_questions(
    jsonl_path: Path,
    dataset: str,
    columns: Mapping[str, str] | None = None,
    check_images: bool = True,
    only: Collection[str] | None = None,
) -> list[Record]:
    """One record per non-blank line, each a JSON object; `answers` is a string or a list (of
    strings, or of `{answer: ...}` objects). With `only` (question ids), images are checked for
    those records alone."""
    path = Path(jsonl_path)
    rows = []
    for line, text in _lines(path):
        try:
            rows.append((line, json.loads(text)))
        except json.JSONDecodeError as err:
            raise InputError(path, f"malformed JSON ({err.msg})", record=f"line {line}, column {err.colno}") from err
    return _records(path, rows, Columns.of(columns, dataset), dataset, check_images, only, separator=None)


def read_csv_questions(
    csv_path: Path,
    dataset: str,
    columns: Mapping[str, str] | None = None,
    check_images: bool = True,
    only: Collection[str] | None = None,
) -> list[Record]:
    """One record per row of a CSV file with a header row; `answers` holds one answer, or several
    separated by `|` (`CSV_ANSWER_SEPARATOR`). An empty `question_type` / `answer_type` is None.
    With `only` (question ids), images are checked for those records alone."""
    path = Path(csv_path)
    names = Columns.of(columns, dataset)
    rows = read_delimited(path, ",", names.required_columns)
    return _records(path, rows, names, dataset, check_images, only, CSV_ANSWER_SEPARATOR)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-blank line; a byte-order mark is dropped."""
    with reading_text(path), open(path, "rb") as handle:
        for line, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError as err:
                raise InputError(
                    path, f"not UTF-8 text ({err.reason} at byte {err.start})", record=f"line {line}"
                ) from err
            if text.strip():
                yield line, text


def _records(
    path: Path,
    rows: list[tuple[int, Any]],
    columns: Columns,
    dataset: str,
    check_images: bool,
    only: Collection[str] | None,
    separator: str | None,
) -> list[Record]:
    """The records of (line number, row) pairs; then each distinct image of the records in
    `only` (or of all) is checked, the first record naming it named in the error."""
    records, names, lines = [], [], []
    column = columns.names["image"]
    for line, row in rows:
        name, fields = read_fields(row, columns, path, f"line {line}", str(line), separator)
        if column not in row:
            raise InputError(path, "missing required field", record=name, field=column)
        image = row[column]
        if not isinstance(image, str) or not image.strip():
            raise InputError(path, f"expected an image path, got {image!r}", record=name, field=column)
        image_file = Path(image) if Path(image).is_absolute() else path.parent / image
        records.append(Record(image=str(image_file), dataset=dataset, source={"line": line}, **fields))
        names.append(name)
        lines.append(f"line {line}")
    check_unique([r.question_id for r in records], path, lines)
    if check_images:
        checked: set[str] = set()
        for r, name in zip(records, names):
            if (only is None or r.question_id in only) and r.image not in checked:
                verify_listed_image(Path(r.image), path, name, column)
                checked.add(r.image)
    return records
