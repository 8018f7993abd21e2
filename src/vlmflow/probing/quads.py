"""Cross-group quads (seed 004): a distance pair's scene asked the vertical question as well.

"Is A far or close compared to B?" and "Is A above or under B?" about the same two objects in the
same image make a quad: two swap pairs, two deltas. If a model reads "far" as "higher in the
frame" (the perspective bias of "Why Far Looks Up"), the two deltas of a quad line up. Whether A
is above B is read off the scene's boxes: a bbox cache, JSON keyed by the TSV's question_id:

    {"<question_id>": {"subject":   {"name": "red square",  "box": [x0, y0, x1, y1]},
                       "reference": {"name": "blue circle", "box": [x0, y0, x1, y1]}}}

where the subject is the original question's subject and boxes are in pixels, y growing down.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vlmflow.core.errors import InputError
from vlmflow.core.records import Record
from vlmflow.data.swap_pairs import AXES, OPPOSITE

VERTICAL_TEMPLATE = "Is the {a} above or under the {b}?"  # the synthetic swap pairs' wording


@dataclass(frozen=True)
class SceneObject:
    name: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1


@dataclass(frozen=True)
class SceneBoxes:
    subject: SceneObject
    reference: SceneObject


def _scene_object(path: Path, key: str, role: str, value: object) -> SceneObject:
    if not isinstance(value, Mapping) or not isinstance(value.get("name"), str) or not value["name"].strip():
        raise InputError(path, 'expected {"name": <non-empty string>, "box": [x0, y0, x1, y1]}', record=key, field=role)
    box = value.get("box")
    if not (
        isinstance(box, list)
        and len(box) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in box)
    ):
        raise InputError(
            path, f"box must be four numbers [x0, y0, x1, y1], got {box!r}", record=key, field=f"{role}.box"
        )
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise InputError(path, f"empty box {box} (needs x0 < x1 and y0 < y1)", record=key, field=f"{role}.box")
    return SceneObject(value["name"].strip(), (x0, y0, x1, y1))


def read_boxes(path: str | Path) -> dict[str, SceneBoxes]:
    """The bbox cache, validated: every entry needs a subject and a reference with a name and a box."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise InputError(path, "file not found") from err
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"not a JSON file ({err})") from err
    if not isinstance(data, dict):
        raise InputError(path, f"expected an object keyed by question_id, got {type(data).__name__}")
    scenes = {}
    for key, entry in data.items():
        if not isinstance(entry, Mapping):
            raise InputError(path, "expected an object with subject and reference", record=key)
        scenes[str(key)] = SceneBoxes(
            *(_scene_object(path, key, role, entry.get(role)) for role in ("subject", "reference"))
        )
    return scenes


def vertical_relation(subject: SceneObject, reference: SceneObject) -> str | None:
    """ "above" / "under" when the boxes do not overlap vertically, else None (ambiguous)."""
    if subject.box[3] <= reference.box[1]:
        return "above"
    if subject.box[1] >= reference.box[3]:
        return "under"
    return None


def vertical_pairs(
    pairs: Sequence[tuple[Record, Record]], boxes: Mapping[str, SceneBoxes], template: str = VERTICAL_TEMPLATE
) -> list[Record]:
    """For every distance pair whose scene has boxes with a clear vertical relation: the vertical
    swap pair about the same objects, original question first, as two records keyed by the same
    `pair_id` (so its delta joins the distance delta of the same scene)."""
    records = []
    for orig, _ in pairs:
        source = orig.source
        scene = boxes.get(str(source["pair_id"]))
        if source["group"] != "distance" or scene is None:
            continue
        relation = vertical_relation(scene.subject, scene.reference)
        if relation is None:
            continue
        a, b = scene.subject.name, scene.reference.name
        for role, question, answer in (
            ("orig", template.format(a=a, b=b), relation),
            ("swap", template.format(a=b, b=a), OPPOSITE[relation]),
        ):
            records.append(
                Record(
                    question_id=f"{source['pair_id']}_vertical_{role}",
                    image=orig.image,
                    question=question,
                    answers=[answer],
                    dataset=orig.dataset,
                    question_type=answer,
                    answer_type=None,
                    candidates=list(AXES["vertical"]),
                    source={"pair_id": source["pair_id"], "role": role, "category": relation, "group": "vertical"},
                )
            )
    return records
