"""Contiguous shards tile the records in order; gathering checks every question is answered once."""

from __future__ import annotations

import json

import pytest

from vlmflow.core.shards import gather_jsonl, parse_shard, shard_labels, shard_of


@pytest.mark.parametrize("count", [1, 2, 3, 7, 12])
@pytest.mark.parametrize("batch_size", [1, 3, 4])
def test_shards_tile_the_records_in_order_at_batch_boundaries(count, batch_size):
    items = list(range(10))
    parts = [shard_of(items, label, batch_size) for label in shard_labels(count)]
    assert [x for part in parts for x in part] == items
    batches = [items[i : i + batch_size] for i in range(0, 10, batch_size)]
    assert [
        batch for part in parts for batch in (part[i : i + batch_size] for i in range(0, len(part), batch_size))
    ] == batches
    sizes = [-(-len(part) // batch_size) for part in parts]
    assert max(sizes) - min(sizes) <= 1, "whole batches spread evenly"


@pytest.mark.parametrize("label", ["0-of-3", "4-of-3", "2of3", "a-of-b"])
def test_a_bad_shard_label_is_a_clear_error(label):
    with pytest.raises(ValueError, match="expected '<i>-of-<n>'"):
        parse_shard(label)


def write(path, ids):
    path.write_text("".join(json.dumps({"question_id": i, "prediction": "x"}) + "\n" for i in ids))
    return path


def test_gather_concatenates_in_shard_order(tmp_path):
    parts = [write(tmp_path / "1.jsonl", ["a", "b"]), write(tmp_path / "2.jsonl", ["c"])]
    assert gather_jsonl(parts, tmp_path / "out.jsonl", ["a", "b", "c"]) == 3
    assert (tmp_path / "out.jsonl").read_bytes() == b"".join(p.read_bytes() for p in parts)


def test_gather_refuses_missing_or_reordered_rows(tmp_path):
    parts = [write(tmp_path / "1.jsonl", ["a"]), write(tmp_path / "2.jsonl", ["c"])]
    with pytest.raises(ValueError, match=r"2 shards hold 2 rows for 3 questions \(missing e.g. \['b'\]"):
        gather_jsonl(parts, tmp_path / "out.jsonl", ["a", "b", "c"])
    with pytest.raises(ValueError, match="out of order"):
        gather_jsonl(parts[::-1], tmp_path / "out.jsonl", ["a", "c"])
    assert not (tmp_path / "out.jsonl").exists()
