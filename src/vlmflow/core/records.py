"""The unified question record every dataset is cached to (one JSON object per line).

Upstream formats differ (TextVQA JSON, the VQAv2 questions/annotations pair, Kvasir-VQA parquet,
swap-pair TSV); every later stage reads only this record, so adding a dataset means writing one
reader that yields it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vlmflow.core.io import read_jsonl


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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Record:
        return cls(**obj)


def read_records(paths: str | Path | Iterable[str | Path]) -> list[Record]:
    """The records of one cache file, or of several concatenated in order."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    return [Record.from_json(row) for path in paths for row in read_jsonl(path)]
