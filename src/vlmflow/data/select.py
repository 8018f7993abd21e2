"""Choose which cached records an experiment runs on: a case list, a seeded subsample, a limit.

The order is fixed (case list, then subsample, then limit) and dataset order is always kept, so
`limit: 50` means the same 50 questions on every run and every machine.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from vlmflow.core.errors import InputError
from vlmflow.core.records import Record
from vlmflow.data.common import load_json


def load_case_ids(path: Path) -> list[str]:
    """Question ids from a case list, as strings.

    Accepted: .json holding a list of ids or of objects with "question_id"; .txt with one id
    per line; .csv whose first column holds the ids (a first row reading "question_id" is a
    header). Blank lines are skipped.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".txt", ".csv"):
        raise InputError(path, f"unsupported case-list format {suffix!r} (use .json, .txt or .csv)")
    if suffix == ".json":
        return _json_ids(path, load_json(path))
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            if suffix == ".txt":
                ids = [line.strip() for line in handle]
            else:
                ids = [row[0].strip() if row else "" for row in csv.reader(handle)]
    except FileNotFoundError as err:
        raise InputError(path, "file not found") from err
    if suffix == ".csv" and ids and ids[0] == "question_id":
        ids = ids[1:]
    return [i for i in ids if i]


def _json_ids(path: Path, obj: object) -> list[str]:
    if not isinstance(obj, list):
        raise InputError(path, f"expected a list of ids, got {type(obj).__name__}", record="top level")
    ids = []
    for i, item in enumerate(obj):
        value = item.get("question_id") if isinstance(item, dict) else item
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise InputError(
                path,
                "expected an id (string or integer) or an object with 'question_id'",
                record=f"item {i}",
                field="question_id",
            )
        ids.append(str(value))
    return ids


def select(
    records: list[Record],
    *,
    limit: int | None = None,
    subsample: int | None = None,
    seed: int = 0,
    case_ids: list[str] | None = None,
) -> list[Record]:
    """Case-list filter, then a seeded subsample of `subsample` records, then the first `limit`;
    each step keeps dataset order."""
    for name, value in (("limit", limit), ("subsample", subsample)):
        if value is not None and value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if case_ids is not None:
        wanted = {str(i) for i in case_ids}
        records = [r for r in records if r.question_id in wanted]
    if subsample is not None and subsample < len(records):
        keep = sorted(random.Random(seed).sample(range(len(records)), subsample))
        records = [records[i] for i in keep]
    if limit is not None:
        records = records[:limit]
    return list(records)
