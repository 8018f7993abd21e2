"""One error type for bad user input, so every message names the file, the record and the field."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input data: says where (file, record) and what (field, problem)."""

    def __init__(
        self,
        path: str | Path,
        problem: str,
        record: str | int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path)
        self.problem = problem
        self.record = record
        self.field = field
        where = self.path
        if record is not None:
            where += f", record {record}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {problem}")
