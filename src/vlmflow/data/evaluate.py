"""Score a predictions file against its cached records: overall, per answer type, per question type,
and per inferred question type (`vlmflow.data.question_types`) with numeric tolerance and set match."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmflow.core.errors import InputError
from vlmflow.core.io import read_jsonl
from vlmflow.core.records import read_records
from vlmflow.data.question_types import infer_question_type
from vlmflow.data.typed_metric import Tolerance, typed_report
from vlmflow.data.vqa_metric import DATASET_FORMATS, accuracy_report

METRICS = ("vqa_accuracy", "exact_match")


def evaluate_predictions(
    cache_path: str | Path,
    predictions_path: str | Path,
    metric: str = "vqa_accuracy",
    variant: str = "official",
    tolerance: Tolerance = Tolerance(),  # noqa: B008  (frozen, so one shared default is safe)
    dataset_format: str | None = None,
) -> dict[str, Any]:
    """Join predictions to records by question id and compute the accuracy report.

    `dataset_format` is the cached dataset's format (``config["datasets"][name]["format"]``):
    `variant` ``lmms_eval`` scores TextVQA with lmms-eval's TextVQA processing and anything else
    with its VQAv2 processing (`vlmflow.data.vqa_metric`); the other variants ignore it.

    Every cached question must have exactly one prediction: a silently skipped question would
    inflate the score. `typed` scores each inferred question type by its own rule (numeric
    tolerance for counts and sizes, set match for multi-answers); `format_adherence` is the share
    of outputs in the shape the answer mode asked for. Datasets of question pairs (swap pairs:
    `source["pair_id"]`) also get `both_correct`, the share of pairs with both questions right.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric '{metric}'; choose one of {', '.join(METRICS)}")
    if dataset_format is not None and dataset_format not in DATASET_FORMATS:
        raise ValueError(f"unknown dataset format '{dataset_format}'; choose one of {', '.join(DATASET_FORMATS)}")
    records = {r.question_id: r for r in read_records(cache_path)}
    predictions: dict[str, str] = {}
    followed: list[bool] = []
    for lineno, row in enumerate(read_jsonl(predictions_path), start=1):
        qid = row.get("question_id")
        if qid not in records:
            raise InputError(predictions_path, f"question id {qid!r} is not in {cache_path}", record=f"line {lineno}")
        if qid in predictions:
            raise InputError(predictions_path, f"duplicate prediction for {qid!r}", record=f"line {lineno}")
        predictions[qid] = row["prediction"]
        if "format_ok" in row:
            followed.append(bool(row["format_ok"]))
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
            "qtype": record.source.get("inferred_type") or infer_question_type(record.question),
            "pair": record.source.get("pair_id"),
        }
        for qid, record in records.items()
    ]
    report = {
        "metric": metric,
        "variant": variant,
        "dataset_format": dataset_format,
        **accuracy_report(items, metric=metric, variant=variant, dataset_format=dataset_format),
    }
    report["typed"] = typed_report(items, tolerance)
    if followed:
        report["format_adherence"] = sum(followed) / len(followed)
    return report
