"""Validation helpers shared by the dataset readers.

Every check raises `InputError` naming the file, the record and the field, so a user with a
broken download sees exactly where to look instead of a KeyError deep in a later stage.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from vlmflow.core.errors import InputError
from vlmflow.core.records import Record

_TYPE_NAMES = {str: "a string", int: "an integer", list: "a list", dict: "an object"}


def load_json(path: Path) -> Any:
    """Parse a JSON file; a syntax error names the line and column."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError as err:
        raise InputError(path, "file not found") from err
    except UnicodeDecodeError as err:
        raise InputError(path, f"not UTF-8 text ({err.reason} at byte {err.start})") from err
    except json.JSONDecodeError as err:
        raise InputError(path, f"malformed JSON ({err.msg})", record=f"line {err.lineno}, column {err.colno}") from err


def require(obj: Any, key: str, kind: type, path: Path, record: str) -> Any:
    """`obj[key]`, checked to exist and to be of `kind` (bool is not an integer here)."""
    if not isinstance(obj, dict):
        raise InputError(path, f"expected an object, got {type(obj).__name__}", record=record)
    if key not in obj:
        raise InputError(path, "missing required field", record=record, field=key)
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InputError(
            path,
            f"expected {_TYPE_NAMES[kind]}, got {type(value).__name__}",
            record=record,
            field=key,
        )
    return value


def require_str_list(obj: Any, key: str, path: Path, record: str) -> list[str]:
    value = require(obj, key, list, path, record)
    if not value or not all(isinstance(v, str) for v in value):
        raise InputError(path, "expected a non-empty list of strings", record=record, field=key)
    return value


def check_unique(ids: list[str], path: Path, where: list[str], field: str = "question_id") -> None:
    """Raise on the first id seen twice, naming both positions (`where[i]` describes record i)."""
    first: dict[str, int] = {}
    for i, qid in enumerate(ids):
        if qid in first:
            raise InputError(
                path,
                f"duplicate {field} {qid} at {where[first[qid]]} and {where[i]}",
                record=f"{field} {qid}",
                field=field,
            )
        first[qid] = i


def verify_image_file(image: Path, question_id: str) -> None:
    """The image a record points to must exist and decode; the error names both."""
    if not image.is_file():
        raise InputError(image, "image file not found", record=f"question_id {question_id}", field="image")
    try:
        with Image.open(image) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise InputError(
            image, f"unreadable image ({err})", record=f"question_id {question_id}", field="image"
        ) from err


def verify_image_bytes(data: bytes, path: Path, record: str, field: str) -> None:
    """Embedded image bytes (parquet, base64) must decode as an image."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise InputError(path, f"unreadable image ({err})", record=record, field=field) from err


def verify_images(records: list[Record]) -> None:
    """Check each distinct image file once (many questions share an image)."""
    seen: set[str] = set()
    for r in records:
        if r.image not in seen:
            verify_image_file(Path(r.image), r.question_id)
            seen.add(r.image)
