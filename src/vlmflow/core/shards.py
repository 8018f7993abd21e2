"""Split an experiment's records into contiguous shards, one job each, and gather their rows back.

Shards are cut at batch boundaries: with U = ceil(N / batch_size) batches, shard `i` of `n`
(1-based) answers batches [floor((i-1)·U/n), floor(i·U/n)). Every batch a shard answers is then
one the unsharded run answers, padded the same, so the gathered rows are byte for byte the rows
one job writes (floating-point scores included, on any device), not merely equal up to batch
effects.
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


def shard_of(items: Sequence[T], label: str, batch_size: int = 1) -> list[T]:
    """The contiguous part of `items` that shard `label` answers, whole batches of `batch_size`."""
    index, count = parse_shard(label)
    batches = -(-len(items) // batch_size)
    start, end = ((index - 1) * batches // count) * batch_size, (index * batches // count) * batch_size
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
