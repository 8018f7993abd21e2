"""Score a predictions file against its cached records: overall, per answer type, per question type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmflow.errors import InputError
from vlmflow.io import read_jsonl
from vlmflow.records import read_records
from vlmflow.vqa_metric import accuracy_report

METRICS = ("vqa_accuracy", "exact_match")


def evaluate_predictions(
    cache_path: str | Path,
    predictions_path: str | Path,
    metric: str = "vqa_accuracy",
    variant: str = "official",
) -> dict[str, Any]:
    """Join predictions to records by question id and compute the accuracy report.

    Every cached question must have exactly one prediction: a silently skipped question would
    inflate the score.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric '{metric}'; choose one of {', '.join(METRICS)}")
    records = {r.question_id: r for r in read_records(cache_path)}
    predictions: dict[str, str] = {}
    for lineno, row in enumerate(read_jsonl(predictions_path), start=1):
        qid = row.get("question_id")
        if qid not in records:
            raise InputError(predictions_path, f"question id {qid!r} is not in {cache_path}", record=f"line {lineno}")
        if qid in predictions:
            raise InputError(predictions_path, f"duplicate prediction for {qid!r}", record=f"line {lineno}")
        predictions[qid] = row["prediction"]
    missing = [qid for qid in records if qid not in predictions]
    if missing:
        raise InputError(
            predictions_path, f"{len(missing)} of {len(records)} questions have no prediction, e.g. {missing[:3]}"
        )
    items = [
        {
            "prediction": predictions[qid],
            "answers": record.answers,
            "question_type": record.question_type,
            "answer_type": record.answer_type,
        }
        for qid, record in records.items()
    ]
    report = accuracy_report(items, metric=metric, variant=variant)
    return {"metric": metric, "variant": variant, **report}
