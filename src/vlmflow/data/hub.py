"""Read Hugging Face tables, hub parquet exports and `save_to_disk` folders, into records.

Each row is one question with the fields of `vlmflow.data.columns`. The image column is a
`datasets` Image struct {bytes, path}, plain bytes, or a path string. Image bytes are extracted
once per distinct image, named by their content (`{sha256[:16]}.jpg`, `.png`, ... by their
format), so the questions of one image share one file; an image given by path alone (relative to
the table's folder unless absolute) is read in place. Without a question id column, a record's id
is its row number in the dataset, counted from 0 across the shards in order.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
from collections.abc import Collection, Mapping
from pathlib import Path

import pyarrow as pa

from vlmflow.core.errors import InputError
from vlmflow.core.records import Record
from vlmflow.data.columns import Columns, read_fields
from vlmflow.data.common import (
    check_unique,
    image_suffix,
    load_json,
    require,
    staged_folder,
    verify_image_bytes,
    verify_listed_image,
    write_extracted_image,
)
from vlmflow.data.tables import TableFile, holds_image_bytes, image_cell, open_table, require_columns

_NAME_HEX = 16  # hex digits of an extracted image's content hash in its file name


def parquet_files(parquet: str | Path) -> list[Path]:
    """The parquet shards `parquet` names, sorted: one file, every `*.parquet` of a folder, or the
    matches of a glob pattern (`data/validation-*.parquet`)."""
    path = Path(parquet)
    if path.is_dir():
        files = sorted(path.glob("*.parquet"))
        if not files:
            raise InputError(path, "no .parquet file in this folder")
        return files
    if not path.exists() and any(char in str(parquet) for char in "*?["):
        files = sorted(Path(f) for f in glob.glob(str(parquet)))
        if not files:
            raise InputError(path, "no file matches this pattern")
        return files
    return [path]


def hf_dataset_files(folder: Path) -> list[Path]:
    """The Arrow shards of a `Dataset.save_to_disk` folder, in the order its `state.json` lists them."""
    folder = Path(folder)
    state_path = folder / "state.json"
    if not state_path.is_file() and (folder / "dataset_dict.json").is_file():
        raise InputError(folder, "a DatasetDict folder: point `path` at the folder of one split (e.g. .../validation)")
    files = require(load_json(state_path), "_data_files", list, state_path, "top level")
    if not files:
        raise InputError(state_path, "expected at least one data file", record="top level", field="_data_files")
    return [folder / require(item, "filename", str, state_path, f"_data_files[{i}]") for i, item in enumerate(files)]


def read_parquet_questions(
    parquet: str | Path,
    images_out_dir: Path | None,
    dataset: str,
    columns: Mapping[str, str] | None = None,
    check_images: bool = True,
    only: Collection[str] | None = None,
) -> list[Record]:
    """The records of parquet shards (`parquet_files`), as `read_tables` reads them."""
    tables = [open_table(f, "parquet") for f in parquet_files(parquet)]
    return read_tables(Path(parquet), tables, images_out_dir, dataset, columns, check_images, only)


def read_hf_dataset(
    folder: Path,
    images_out_dir: Path | None,
    dataset: str,
    columns: Mapping[str, str] | None = None,
    check_images: bool = True,
    only: Collection[str] | None = None,
) -> list[Record]:
    """The records of a `save_to_disk` folder (`hf_dataset_files`), as `read_tables` reads them."""
    tables = [open_table(f, "arrow") for f in hf_dataset_files(Path(folder))]
    return read_tables(Path(folder), tables, images_out_dir, dataset, columns, check_images, only)


def read_tables(
    source: Path,
    tables: list[TableFile],
    images_out_dir: Path | None,
    dataset: str,
    columns: Mapping[str, str] | None = None,
    check_images: bool = True,
    only: Collection[str] | None = None,
) -> list[Record]:
    """One record per row of `tables` (the shards of `source`, in order).

    The text columns of every row are validated first, then the image column is streamed: the
    images of the records in `only` (or of all) are checked (decoded in full) and extracted to
    `images_out_dir`; the other records keep image "", as do all records with embedded bytes when
    `images_out_dir` is None. Images are extracted into a temporary folder that replaces
    `images_out_dir` only when every one decoded: on any error it is left as it was."""
    layout = Columns.of(columns, dataset)
    image_column = layout.names["image"]
    for table in tables:
        require_columns(table, layout.required_columns)
        kind = table.schema.field(image_column).type
        if not (holds_image_bytes(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise InputError(
                table.path,
                f"expected an image struct {{bytes, path}}, binary or a path string, got {kind}",
                field=image_column,
            )
    records: list[Record] = []
    labels, places = [], []
    for table in tables:
        text = [c for c in dict.fromkeys(layout.names.values()) if c in table.schema.names and c != image_column]
        for i, row in enumerate(table.rows(text)):
            label, fields = read_fields(row, layout, table.path, f"row {i}", str(len(records)))
            records.append(Record(image="", dataset=dataset, source={"file": table.path.name, "row": i}, **fields))
            labels.append(label)
            places.append(f"{table.path.name} row {i}")
    check_unique([r.question_id for r in records], source, places)
    wanted = {i for i, r in enumerate(records) if only is None or r.question_id in only}
    images: dict[int, str] = {}
    if images_out_dir is not None:
        with staged_folder(Path(images_out_dir)) as staging:
            images = _images(tables, image_column, labels, wanted, check_images, (staging, Path(images_out_dir)))
    elif check_images:
        images = _images(tables, image_column, labels, wanted, check_images, None)
    return [dataclasses.replace(r, image=images[i]) if i in images else r for i, r in enumerate(records)]


def _images(
    tables: list[TableFile],
    column: str,
    labels: list[str],
    wanted: set[int],
    check_images: bool,
    extract: tuple[Path, Path] | None,
) -> dict[int, str]:
    """Record index -> image file, for each wanted record. Embedded bytes are checked once per
    distinct content and, with `extract` (staging folder, final folder), written to the staging
    folder under their content name; the path is the one they get in the final folder. An image
    given by path is checked where it is."""
    images: dict[int, str] = {}
    seen: dict[str, str] = {}  # content hash or path -> image file
    rows = ((table.path, row) for table in tables for row in table.rows([column]))
    for index, (path, row) in enumerate(rows):
        if index not in wanted:
            continue
        data, upstream = image_cell(row[column])
        record = labels[index]
        if data is not None:
            key = hashlib.sha256(data).hexdigest()[:_NAME_HEX]
            if key not in seen:
                seen[key] = _extracted(data, key, path, record, column, check_images, extract)
        elif upstream is not None:
            key = str(Path(upstream) if Path(upstream).is_absolute() else path.parent / upstream)
            if key not in seen:
                if check_images:
                    verify_listed_image(Path(key), path, record, column)
                seen[key] = key
        else:
            raise InputError(path, "no image bytes or path", record=record, field=column)
        if seen[key]:
            images[index] = seen[key]
    return images


def _extracted(
    data: bytes, key: str, path: Path, record: str, column: str, check_images: bool, extract: tuple[Path, Path] | None
) -> str:
    """Check image bytes and write them (with `extract`); their image file, or "" when not written."""
    if check_images:
        verify_image_bytes(data, path, record, column)
    if extract is None:
        return ""
    staging, final = extract
    name = key + image_suffix(data, path, record, column)
    write_extracted_image(staging / name, data, path)
    return str(final / name)
