"""The unified question record every dataset is cached to (one JSON object per line).

Upstream formats differ (TextVQA JSON, the VQAv2 questions/annotations pair, Kvasir-VQA parquet,
swap-pair TSV); every later stage reads only this record, so adding a dataset means writing one
reader that yields it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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
