"""Read Arrow tables (parquet files, `datasets` Arrow stream shards) row by row, with input errors.

Shared by the readers of tables with embedded images (Kvasir-VQA, the generic `parquet` and
`hf_datasets` formats): a table is opened once to check its columns, then streamed in batches of
a few hundred rows per pass, so only one batch of image bytes is in memory at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vlmflow.core.errors import InputError

_BATCH_ROWS = 256
_LABELS = {"parquet": "parquet", "arrow": "Arrow stream"}


@dataclass(frozen=True)
class TableFile:
    """One parquet file, or one Arrow IPC stream file (a shard written by `save_to_disk`)."""

    path: Path
    kind: str  # "parquet" or "arrow"
    schema: pa.Schema

    def rows(self, columns: list[str]) -> Iterator[dict[str, Any]]:
        """Row dicts of `columns` in file order; a corrupt page becomes an InputError on the file."""
        try:
            if self.kind == "parquet":
                yield from _rows(pq.ParquetFile(self.path).iter_batches(batch_size=_BATCH_ROWS, columns=columns))
            else:
                with pa.memory_map(str(self.path)) as source:  # only the columns read are paged in
                    yield from _rows(batch.select(columns) for batch in pa.ipc.open_stream(source))
        except (pa.ArrowException, OSError) as err:
            raise InputError(self.path, f"unreadable {_LABELS[self.kind]} ({err})") from err


def _rows(batches: Iterable[pa.RecordBatch]) -> Iterator[dict[str, Any]]:
    for batch in batches:
        for offset in range(0, batch.num_rows, _BATCH_ROWS):
            yield from batch.slice(offset, _BATCH_ROWS).to_pylist()


def open_table(path: Path, kind: str) -> TableFile:
    """Open a parquet file (`kind` "parquet") or an Arrow IPC stream file ("arrow") and read its
    schema; a missing or unreadable file is an InputError on it."""
    path = Path(path)
    try:
        if kind == "parquet":
            schema = pq.ParquetFile(path).schema_arrow
        else:
            with pa.memory_map(str(path)) as source:
                schema = pa.ipc.open_stream(source).schema
    except FileNotFoundError as err:
        raise InputError(path, "file not found") from err
    except (pa.ArrowException, OSError) as err:
        raise InputError(path, f"unreadable {_LABELS[kind]} ({err})") from err
    return TableFile(path, kind, schema)


def require_columns(table: TableFile, columns: Iterable[str]) -> None:
    """Every one of `columns` must be in the table; the error lists the columns it has."""
    names = table.schema.names
    for column in columns:
        if column not in names:
            raise InputError(table.path, f"missing column (found: {', '.join(names)})", field=column)


def holds_image_bytes(kind: pa.DataType) -> bool:
    """Whether a column type holds image bytes: a `datasets` Image struct {bytes, path}, or binary."""
    if pa.types.is_struct(kind):
        return kind.get_field_index("bytes") >= 0
    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind)


def image_cell(value: Any) -> tuple[bytes | None, str | None]:
    """(bytes, path) of one image cell, each None when absent or empty: a {bytes, path} struct,
    plain bytes, or a path string."""
    if isinstance(value, dict):
        return value.get("bytes") or None, value.get("path") or None
    if isinstance(value, str):
        return None, value or None
    return value or None, None
