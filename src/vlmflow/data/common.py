"""Validation helpers shared by the dataset readers.

Every check raises `InputError` naming the file, the record and the field, so a user with a
broken download sees exactly where to look instead of a KeyError deep in a later stage.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import IO, Any

from PIL import Image, ImageFile, UnidentifiedImageError

from vlmflow.core.errors import InputError
from vlmflow.core.io import atomic_directory
from vlmflow.core.records import Record, image_file_stamp

_TYPE_NAMES = {str: "a string", int: "an integer", list: "a list", dict: "an object"}


@contextlib.contextmanager
def reading_text(path: Path) -> Iterator[None]:
    """Turn a missing file or bytes that are not UTF-8, met inside the block, into an `InputError`."""
    try:
        yield
    except FileNotFoundError as err:
        raise InputError(path, "file not found") from err
    except UnicodeDecodeError as err:
        raise InputError(path, f"not UTF-8 text ({err.reason} at byte {err.start})") from err


def load_json(path: Path) -> Any:
    """Parse a JSON file; a syntax error names the line and column."""
    try:
        with reading_text(path), open(path, encoding="utf-8") as handle:
            return json.load(handle)
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


_SEPARATORS = {"\t": ("TSV", "tab"), ",": ("CSV", "comma")}


def read_delimited(path: Path, delimiter: str, required: Collection[str]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) pairs of a TSV or CSV file with a header row naming every `required`
    column; blank lines are skipped, a row of another width is an error naming its line."""
    kind, separator = _SEPARATORS[delimiter]
    try:
        with reading_text(path), open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            header = next(reader, None)
            if header is None:
                raise InputError(path, "empty file: no header row", record="line 1")
            missing = [column for column in required if column not in header]
            if missing:
                names = ", ".join(repr(column) for column in missing)
                raise InputError(path, f"header lacks column {names}", record="line 1", field=missing[0])
            rows = []
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    raise InputError(
                        path,
                        f"expected {len(header)} {separator}-separated columns, found {len(row)}",
                        record=f"line {reader.line_num}",
                    )
                rows.append((reader.line_num, dict(zip(header, row, strict=True))))
            return rows
    except csv.Error as err:
        raise InputError(path, f"malformed {kind} ({err})", record=f"line {reader.line_num}") from err


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


def image_path(folder: Path | None, name: str, path: Path, record: str, field: str) -> str:
    """`folder / name` as a string ("" when `folder` is None), where `name` is an image file name
    built from the data (an id and a suffix): it must be one plain file name, so the path stays
    inside `folder` wherever it is read or written. An absolute name, a separator, `..` or a
    leading dot (hidden, `.`, `..`) raises `InputError` naming the data file, record and field the
    name came from. `name` is checked even when `folder` is None, so a bad id fails the same way
    whether or not images are extracted."""
    problem = None
    if not name or "\x00" in name:
        problem = "is empty or holds a NUL character"
    elif os.path.isabs(name) or Path(name).drive:
        problem = "is an absolute path"
    elif "/" in name or "\\" in name or os.sep in name:
        problem = "holds a path separator"
    elif name.startswith("."):
        problem = "starts with a dot"
    if problem is None and folder is not None:
        inside = os.path.abspath(folder)
        if os.path.dirname(os.path.abspath(os.path.join(folder, name))) != inside:
            problem = f"leaves the folder {folder}"
    if problem is not None:
        raise InputError(
            path,
            f"unusable image file name {name!r}: it {problem}; an image id must be a plain file name "
            "that stays inside its images folder",
            record=record,
            field=field,
        )
    return "" if folder is None else str(Path(folder) / name)


_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


@contextlib.contextmanager
def _strict_decoding() -> Iterator[None]:
    """Truncated images raise even where a library switched Pillow's tolerance on globally."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _decode(source: str | Path | IO[bytes]) -> None:
    """Check the structure (`verify`, e.g. PNG checksums), then decode every pixel (`load`):
    `verify` alone does not read JPEG scan data, so a truncated JPEG would pass it."""
    with _strict_decoding():
        with Image.open(source) as im:
            im.verify()
        if not isinstance(source, (str, Path)):
            source.seek(0)
        with Image.open(source) as im:
            im.load()


def verify_image_file(image: Path, question_id: str) -> None:
    """The image a record points to must exist and decode in full; the error names both."""
    if not image.is_file():
        raise InputError(image, "image file not found", record=f"question_id {question_id}", field="image")
    try:
        _decode(image)
    except _DECODE_ERRORS as err:
        raise InputError(
            image, f"unreadable image ({err})", record=f"question_id {question_id}", field="image"
        ) from err


def verify_listed_image(image: Path, path: Path, record: str, field: str) -> None:
    """An image a data file names by path (a JSONL line, a CSV or parquet row) must exist and
    decode in full; the error names the data file, the record and the field, then the image."""
    if not image.is_file():
        raise InputError(path, f"image file not found: {image}", record=record, field=field)
    try:
        _decode(image)
    except _DECODE_ERRORS as err:
        raise InputError(path, f"unreadable image {image} ({err})", record=record, field=field) from err


def verify_image_bytes(data: bytes, path: Path, record: str, field: str) -> None:
    """Embedded image bytes (parquet, base64) must decode in full as an image."""
    try:
        _decode(io.BytesIO(data))
    except _DECODE_ERRORS as err:
        raise InputError(path, f"unreadable image ({err})", record=record, field=field) from err


def image_suffix(data: bytes, path: Path, record: str, field: str) -> str:
    """The usual file suffix of the format image bytes hold (.jpg, .png, .webp, ...), read from their
    header: an extracted image is named for what it is, whatever name it had upstream."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            kind = im.format
    except _DECODE_ERRORS as err:
        raise InputError(path, f"unreadable image ({err})", record=record, field=field) from err
    if kind in ("JPEG", "MPO"):
        return ".jpg"
    suffixes = [suffix for suffix, name in Image.registered_extensions().items() if name == kind]
    return suffixes[0] if suffixes else f".{str(kind).lower()}"


def locate_images(records: list[Record], only: Collection[str] | None = None) -> list[Record]:
    """`records`, where a missing image (of a record in `only`, or of any) is replaced by the one
    file beside it with the same stem and a suffix Pillow reads: a VQAv2 folder converted to PNG,
    or TextVQA images saved as `.jpeg`, are found under the `.jpg` name the reader built. With no
    such file the name is kept, so the image check reports it missing; with several the choice is
    the user's, and an `InputError` names them. Each folder is listed once, at its first miss."""
    by_folder: dict[Path, dict[str, list[str]]] = {}
    found: dict[str, str] = {}
    located = []
    for r in records:
        if not r.image or (only is not None and r.question_id not in only):
            located.append(r)
            continue
        if r.image not in found:
            found[r.image] = _locate(Path(r.image), r.question_id, by_folder)
        located.append(r if found[r.image] == r.image else dataclasses.replace(r, image=found[r.image]))
    return located


def _locate(image: Path, question_id: str, by_folder: dict[Path, dict[str, list[str]]]) -> str:
    if image.is_file():
        return str(image)
    if image.parent not in by_folder:
        by_folder[image.parent] = _readable_by_stem(image.parent)
    names = by_folder[image.parent].get(image.stem, [])
    if len(names) > 1:
        raise InputError(
            image,
            f"image file not found, and {len(names)} files share its stem ({', '.join(names)}): keep one of them",
            record=f"question_id {question_id}",
            field="image",
        )
    return str(image.parent / names[0]) if names else str(image)


def _readable_by_stem(folder: Path) -> dict[str, list[str]]:
    """The files of `folder` with a suffix Pillow reads (any case), by stem; {} if it is unreadable."""
    readable = Image.registered_extensions()
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return {}
    by_stem: dict[str, list[str]] = {}
    for name in names:
        stem, suffix = os.path.splitext(name)
        if suffix.lower() in readable:
            by_stem.setdefault(stem, []).append(name)
    return by_stem


def verify_images(records: list[Record]) -> None:
    """Check each distinct image file once (many questions share an image)."""
    seen: set[str] = set()
    for r in records:
        if r.image not in seen:
            verify_image_file(Path(r.image), r.question_id)
            seen.add(r.image)


def stamp_images(records: list[Record]) -> list[Record]:
    """Copies of `records` carrying their image's size, modification time and hash
    (`Record.image_file`), taken once per distinct image, for `read_records` to notice an image
    replaced after caching. Records without an image ("") are kept as they are."""
    stamps: dict[str, dict[str, Any]] = {}
    stamped = []
    for r in records:
        if r.image and r.image not in stamps:
            stamps[r.image] = image_file_stamp(r.image)
        stamped.append(dataclasses.replace(r, image_file=stamps[r.image]) if r.image else r)
    return stamped


def write_extracted_image(path: Path, data: bytes, source: Path) -> None:
    """Write image bytes taken out of `source` (a parquet, a TSV), dated like `source`: extracting
    the same input again then gives the same `Record.image_file` stamps, so the cache file is
    byte-identical and the resume keys of later stages (a hash of the cache) still match."""
    path.write_bytes(data)
    mtime_ns = os.stat(source).st_mtime_ns
    os.utime(path, ns=(mtime_ns, mtime_ns))


@contextlib.contextmanager
def staged_folder(folder: Path) -> Iterator[Path]:
    """A temporary folder to extract images into, moved onto `folder` only on success
    (`atomic_directory`): on error `folder` is left as it was, and parent folders created for it
    are removed again, so a failed extraction writes nothing."""
    folder = Path(folder)
    created = [p for p in (folder.parent, *folder.parent.parents) if not p.exists()]
    try:
        with atomic_directory(folder) as tmp:
            yield tmp
    except BaseException:
        for parent in created:  # deepest first; only folders still empty go
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise
