"""Split an experiment's records into contiguous shards, one job each, and gather their rows back.

Shard `i` of `n` (1-based) holds records [floor((i-1)·N/n), floor(i·N/n)), so the shards tile the
records in order and the gathered rows are, line for line, the rows one job would have written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from vlmflow.core.io import atomic_write

T = TypeVar("T")
SHARD = re.compile(r"^(\d+)-of-(\d+)$")


def parse_shard(label: str) -> tuple[int, int]:
    """'2-of-3' -> (2, 3); anything else is an error naming the label."""
    match = SHARD.match(label)
    index, count = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if not 1 <= index <= count:
        raise ValueError(f"shard {label!r}: expected '<i>-of-<n>' with 1 <= i <= n")
    return index, count


def shard_labels(count: int) -> list[str]:
    return [f"{i}-of-{count}" for i in range(1, count + 1)]


def shard_of(items: Sequence[T], label: str) -> list[T]:
    """The contiguous part of `items` that shard `label` answers."""
    index, count = parse_shard(label)
    start, end = (index - 1) * len(items) // count, index * len(items) // count
    return list(items[start:end])


def gather_jsonl(parts: Sequence[str | Path], output: str | Path, expected_ids: Sequence[str]) -> int:
    """Concatenate the shards' JSON-lines files, in shard order, into `output` (atomically), after
    checking that together they answer exactly `expected_ids`, in order; returns the rows."""
    lines: list[str] = []
    for part in parts:
        with open(part, encoding="utf-8") as handle:
            lines += [line if line.endswith("\n") else line + "\n" for line in handle if line.strip()]
    ids = [str(json.loads(line)["question_id"]) for line in lines]
    if ids != [str(i) for i in expected_ids]:
        missing = sorted(set(map(str, expected_ids)) - set(ids))
        raise ValueError(
            f"{output}: the {len(parts)} shards hold {len(ids)} rows for {len(expected_ids)} questions "
            f"(missing e.g. {missing[:3]}, or out of order): rerun the shards"
        )
    with atomic_write(output) as handle:
        handle.writelines(lines)
    return len(lines)
