"""Read VQAv2 (the questions/annotations JSON pair and COCO images) into records."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from vlmflow.core.errors import InputError
from vlmflow.core.records import Record
from vlmflow.data.common import check_unique, image_path, load_json, locate_images, require, verify_images


def _items(path: Path, key: str) -> tuple[dict, list]:
    top = load_json(path)
    return top, require(top, key, list, path, "top level")


def _record_name(item: object, key: str, i: int) -> str:
    qid = item.get("question_id") if isinstance(item, dict) else None
    return f"question_id {qid}" if isinstance(qid, int) else f"{key}[{i}]"


def _coco_name(subtype: str, image_id: int) -> str:
    return f"COCO_{subtype}_{image_id:012d}.jpg"


def read_vqav2(
    questions_path: Path,
    annotations_path: Path,
    images_dir: Path,
    dataset: str,
    check_images: bool = True,
    only: Collection[str] | None = None,
) -> list[Record]:
    """Join questions and annotations by question_id, in the questions file's order.

    Image names follow COCO: `COCO_{data_subtype}_{image_id:012d}.jpg` under `images_dir` (or, when
    that is missing, the one file of that stem with another suffix Pillow reads: `locate_images`);
    a `data_subtype` that would lead out of `images_dir` is an `InputError`.
    """
    questions_path, annotations_path = Path(questions_path), Path(annotations_path)
    images_dir = Path(images_dir)
    q_top, questions = _items(questions_path, "questions")
    subtype = require(q_top, "data_subtype", str, questions_path, "top level")
    image_path(images_dir, _coco_name(subtype, 0), questions_path, "top level", "data_subtype")
    _, annotations = _items(annotations_path, "annotations")

    q_ids = []
    for i, q in enumerate(questions):
        rec = _record_name(q, "questions", i)
        q_ids.append(require(q, "question_id", int, questions_path, rec))
        require(q, "image_id", int, questions_path, rec)
        require(q, "question", str, questions_path, rec)
    check_unique(q_ids, questions_path, [f"questions[{i}]" for i in range(len(q_ids))])

    a_ids = []
    for i, a in enumerate(annotations):
        rec = _record_name(a, "annotations", i)
        a_ids.append(require(a, "question_id", int, annotations_path, rec))
        for key in ("question_type", "answer_type", "multiple_choice_answer"):
            require(a, key, str, annotations_path, rec)
        require(a, "image_id", int, annotations_path, rec)
        answers = require(a, "answers", list, annotations_path, rec)
        if not answers or not all(isinstance(x, dict) and isinstance(x.get("answer"), str) for x in answers):
            raise InputError(
                annotations_path,
                "expected a non-empty list of objects with a string 'answer'",
                record=rec,
                field="answers",
            )
    check_unique(a_ids, annotations_path, [f"annotations[{i}]" for i in range(len(a_ids))])
    by_qid = dict(zip(a_ids, annotations, strict=True))

    missing_q = set(by_qid) - set(q_ids)
    if missing_q:
        qid = next(qid for qid in a_ids if qid in missing_q)
        raise InputError(
            annotations_path,
            f"annotation has no matching question in {questions_path} ({len(missing_q)} such)",
            record=f"question_id {qid}",
            field="question_id",
        )

    records = []
    for q in questions:
        qid = q["question_id"]
        a = by_qid.get(qid)
        if a is None:
            raise InputError(
                questions_path,
                f"question has no matching annotation in {annotations_path}",
                record=f"question_id {qid}",
                field="question_id",
            )
        if a["image_id"] != q["image_id"]:
            raise InputError(
                annotations_path,
                f"image_id {a['image_id']} differs from the question's {q['image_id']} in {questions_path}",
                record=f"question_id {qid}",
                field="image_id",
            )
        records.append(
            Record(
                question_id=str(qid),
                image=image_path(
                    images_dir, _coco_name(subtype, q["image_id"]), questions_path, f"question_id {qid}", "image_id"
                ),
                question=q["question"],
                answers=[x["answer"] for x in a["answers"]],
                dataset=dataset,
                question_type=a["question_type"],
                answer_type=a["answer_type"],
                candidates=None,
                source={
                    "image_id": q["image_id"],
                    "question_id": qid,
                    "multiple_choice_answer": a["multiple_choice_answer"],
                },
            )
        )
    records = locate_images(records, only)
    if check_images:
        verify_images([r for r in records if only is None or r.question_id in only])
    return records
