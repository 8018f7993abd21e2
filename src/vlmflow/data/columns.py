"""The fields of the generic formats (jsonl, csv, parquet, hf_datasets) and the checks that read one row.

A row has `question`, `answers` and `image`, and optionally `question_id`, `question_type` and
`answer_type`. A dataset's `columns` mapping renames them (`{question: query, answers: gt_answers}`);
a field it does not name is read from the column of the field's own name. An optional field the
mapping names is required. Errors name the column as it is spelt in the data.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmflow.core.errors import InputError

FIELDS: tuple[str, ...] = ("question_id", "question", "answers", "image", "question_type", "answer_type")
REQUIRED: tuple[str, ...] = ("question", "answers", "image")


@dataclass(frozen=True)
class Columns:
    """Where each field is read from (`names`: field -> column) and which fields must be there."""

    names: dict[str, str]
    required: tuple[str, ...]

    @classmethod
    def of(cls, mapping: Mapping[str, str] | None, dataset: str) -> Columns:
        """The columns of a dataset spec's `columns` mapping (None: every field its own name)."""
        mapping = dict(mapping or {})
        unknown = [field for field in mapping if field not in FIELDS]
        if unknown:
            raise ValueError(
                f"dataset '{dataset}': columns: unknown field(s) {', '.join(unknown)} "
                f"(expected some of {', '.join(FIELDS)})"
            )
        names = {field: mapping.get(field, field) for field in FIELDS}
        return cls(names, tuple(field for field in FIELDS if field in REQUIRED or field in mapping))

    @property
    def required_columns(self) -> list[str]:
        return [self.names[field] for field in self.required]

    def missing(self, present: Collection[str], skip: tuple[str, ...] = ()) -> str | None:
        """The first required column not in `present` (a row's keys, a header), else None;
        `skip` names fields checked elsewhere."""
        return next((self.names[f] for f in self.required if f not in skip and self.names[f] not in present), None)


def read_fields(
    row: Any, columns: Columns, path: Path, where: str, default_id: str, separator: str | None = None
) -> tuple[str, dict[str, Any]]:
    """The record fields of one row but its image: (the record's name for later errors, fields).

    `where` says where the row is ("line 3", "row 7"); the name adds the question id when the row
    has one. Without a question id column the id is `default_id`. `answers` is a string (one
    answer, or several split at `separator` when it is given: CSV), a list of strings, or a list of
    `{answer: ...}` objects (VQAv2 annotations, lmms-lab/VQAv2), which is flattened. An empty
    `question_type` / `answer_type` is None."""
    if not isinstance(row, dict):
        raise InputError(path, f"expected an object, got {type(row).__name__}", record=where)
    missing = columns.missing(row, skip=("image",))
    if missing is not None:
        raise InputError(path, "missing required field", record=where, field=missing)
    names = columns.names
    question_id = _question_id(row, names["question_id"], path, where, default_id)
    record = f"{where} (question_id {question_id})" if names["question_id"] in row else where
    question = row[names["question"]]
    if not isinstance(question, str):
        raise InputError(
            path, f"expected a string, got {type(question).__name__}", record=record, field=names["question"]
        )
    return record, {
        "question_id": question_id,
        "question": question,
        "answers": _answers(row[names["answers"]], path, record, names["answers"], separator),
        "question_type": _optional_text(row, names["question_type"], path, record),
        "answer_type": _optional_text(row, names["answer_type"], path, record),
    }


def _question_id(row: dict[str, Any], column: str, path: Path, where: str, default: str) -> str:
    if column not in row:
        return default
    value = row[column]
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InputError(
            path, f"expected a string or an integer, got {type(value).__name__}", record=where, field=column
        )
    if not str(value).strip():
        raise InputError(path, "empty value", record=where, field=column)
    return str(value)


def _answers(value: Any, path: Path, record: str, column: str, separator: str | None) -> list[str]:
    if isinstance(value, str):
        answers = [a.strip() for a in value.split(separator)] if separator else [value]
        if not all(a.strip() for a in answers):
            raise InputError(path, f"empty answer in {value!r}", record=record, field=column)
        return answers
    if not isinstance(value, list) or not value:
        what = "an empty list" if isinstance(value, list) else type(value).__name__
        raise InputError(
            path, f"expected an answer or a non-empty list of answers, got {what}", record=record, field=column
        )
    answers = [a.get("answer") if isinstance(a, dict) else a for a in value]
    if not all(isinstance(a, str) for a in answers):
        raise InputError(
            path, "expected a list of strings, or of objects with a string 'answer'", record=record, field=column
        )
    return answers


def _optional_text(row: dict[str, Any], column: str, path: Path, record: str) -> str | None:
    value = row.get(column)
    if value is not None and not isinstance(value, str):
        raise InputError(path, f"expected a string, got {type(value).__name__}", record=record, field=column)
    return value or None
