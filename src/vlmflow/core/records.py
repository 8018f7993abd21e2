"""The unified question record every dataset is cached to (one JSON object per line).

Upstream formats differ (TextVQA JSON, the VQAv2 questions/annotations pair, Kvasir-VQA parquet,
swap-pair TSV); every later stage reads only this record, so adding a dataset means writing one
reader that yields it.

A cached record also carries `image_file`: its image's size, modification time (ns) and a short
SHA-256 of its bytes, taken when the cache was written. `read_records` compares them with the
file on disk (a `stat` per distinct image; the bytes are hashed only when the size matches but
the time does not, e.g. after a copy or a `touch`), so an image replaced after caching is named
instead of silently feeding a later stage other pixels than the cache was checked against. A
record without `image_file` (a cache written before it existed, or a record built in code) is
read without the check.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vlmflow.core.errors import InputError
from vlmflow.core.io import read_jsonl

_HASH_CHARS = 16
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Record:
    """One question about one image, with everything needed to score and trace it."""

    question_id: str
    image: str  # path to the image file
    question: str
    answers: list[str]  # ten for VQAv2 / TextVQA, one (possibly ';'-separated) for Kvasir-VQA
    dataset: str  # the configured dataset name
    question_type: str | None = None
    answer_type: str | None = None  # "yes/no", "number", "other" where known
    candidates: list[str] | None = None  # answer options for closed questions
    source: dict[str, Any] = field(default_factory=dict)  # upstream ids: image_id, index, ...
    image_file: dict[str, Any] | None = None  # {"size", "mtime_ns", "sha256"} when cached

    def to_json(self) -> dict[str, Any]:
        row = asdict(self)
        if row["image_file"] is None:  # records built in code keep the JSON they always had
            del row["image_file"]
        return row

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Record:
        return cls(**obj)


def _sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()[:_HASH_CHARS]


def image_file_stamp(path: str | Path) -> dict[str, Any]:
    """What a cache records of an image file: its size, modification time and a short hash."""
    stat = os.stat(path)
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": _sha256(path)}


def image_change(image: str | Path, stamp: dict[str, Any]) -> str | None:
    """How the file at `image` differs from its `stamp`, or None when it is the file stamped.

    Size and modification time come from one `stat`; the bytes are hashed only when the size is
    the same and the time is not, so a copied or touched file with the same content passes."""
    try:
        stat = os.stat(image)
    except FileNotFoundError:
        return "the image no longer exists"
    if stat.st_size != stamp["size"]:
        return f"its size changed from {stamp['size']} to {stat.st_size} bytes"
    if stat.st_mtime_ns != stamp["mtime_ns"] and _sha256(image) != stamp["sha256"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stat.st_mtime_ns / 1e9))
        return f"its content changed (same size, modified {when})"
    return None


def check_image_files(records: Iterable[Record], cache: str | Path) -> None:
    """Raise on the first record whose image changed since `cache` was written (each distinct
    image and stamp is checked once); records without a stamp are not checked."""
    seen: set[tuple[str, int, int]] = set()
    for r in records:
        stamp = r.image_file
        if not stamp or not r.image:
            continue
        key = (r.image, stamp["size"], stamp["mtime_ns"])
        if key in seen:
            continue
        change = image_change(r.image, stamp)
        if change is not None:
            raise InputError(
                r.image,
                f"{change} since {cache} was written. Re-cache the dataset: "
                f"snakemake --forcerun {cache} (or delete {cache}), then run again",
                record=f"question_id {r.question_id} in {cache}",
                field="image",
            )
        seen.add(key)


def read_records(paths: str | Path | Iterable[str | Path], check_images: bool = True) -> list[Record]:
    """The records of one cache file, or of several concatenated in order.

    With `check_images`, every image is checked to be the file the cache was written with
    (`check_image_files`): an image replaced since raises an `InputError` naming it."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    records = []
    for path in paths:
        these = [Record.from_json(row) for row in read_jsonl(path)]
        if check_images:
            check_image_files(these, path)
        records.extend(these)
    return records
