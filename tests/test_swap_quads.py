"""Cross-group quads: the bbox cache is validated, the synthetic boxes agree with the questions, and
each distance scene with a clear vertical relation gets its vertical swap pair."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vlmflow.core.errors import InputError
from vlmflow.data.swap_pairs import read_swap_pairs
from vlmflow.probing.extraction import cross_group_arrays, swap_pairs
from vlmflow.probing.quads import SceneObject, read_boxes, vertical_pairs, vertical_relation
from vlmflow.synth.swap_pairs import write_swap_pairs


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[list, dict, dict]:
    root = tmp_path_factory.mktemp("swap")
    write_swap_pairs(root / "val.tsv", "val", 36, 0, image_size=112, boxes_path=root / "boxes.json")
    records = read_swap_pairs(root / "val.tsv", root / "images", "swap_val")
    return records, read_boxes(root / "boxes.json"), json.loads((root / "boxes.json").read_text())


def centre(box):
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)


def test_synthetic_boxes_agree_with_every_answer(synthetic):
    records, _, raw = synthetic
    for orig, _ in swap_pairs(records):
        scene = raw[orig.source["pair_id"]]
        (sx, sy), (rx, ry) = centre(scene["subject"]["box"]), centre(scene["reference"]["box"])
        assert scene["subject"]["name"] in orig.question and scene["reference"]["name"] in orig.question
        assert orig.question.index(scene["subject"]["name"]) < orig.question.index(scene["reference"]["name"])
        category = orig.source["category"]
        if category in ("left", "right"):
            assert (sx < rx) == (category == "left")
        elif category in ("above", "under"):
            assert (sy < ry) == (category == "above")
        else:  # the far object is drawn smaller
            area = {role: (b[2] - b[0]) * (b[3] - b[1]) for role, b in
                    ((r, scene[r]["box"]) for r in ("subject", "reference"))}  # fmt: skip
            assert (area["subject"] < area["reference"]) == (category == "far")


def test_every_distance_scene_becomes_a_quad_far_reading_as_above(synthetic):
    records, boxes, _ = synthetic
    pairs = swap_pairs(records)
    vertical = vertical_pairs(pairs, boxes)
    distance = {o.source["pair_id"]: o for o, _ in pairs if o.source["group"] == "distance"}
    assert len(vertical) == 2 * len(distance) > 0
    for orig, swap in zip(vertical[0::2], vertical[1::2]):
        source = distance[orig.source["pair_id"]]
        assert orig.image == source.image and orig.source["role"] == "orig" and swap.source["role"] == "swap"
        assert orig.source["group"] == "vertical"
        # the synthetic layout puts the far object higher in the frame (the seed's perspective cue)
        assert orig.answers == ["above" if source.source["category"] == "far" else "under"]
        assert swap.answers == ["under" if orig.answers == ["above"] else "above"]
        a, b = orig.question.removeprefix("Is the ").removesuffix("?").split(" above or under the ")
        assert swap.question == f"Is the {b} above or under the {a}?"
    assert len(swap_pairs(vertical)) == len(distance)


def test_overlapping_boxes_and_unboxed_scenes_make_no_quad(synthetic):
    records, boxes, _ = synthetic
    pairs = swap_pairs(records)
    first = next(o.source["pair_id"] for o, _ in pairs if o.source["group"] == "distance")
    assert vertical_pairs(pairs, {first: boxes[first]}) and not vertical_pairs(pairs, {})
    subject, reference = SceneObject("a", (0, 0, 10, 10)), SceneObject("b", (0, 5, 10, 20))
    assert vertical_relation(subject, reference) is None
    assert vertical_relation(subject, SceneObject("b", (0, 10, 5, 20))) == "above"
    assert vertical_relation(SceneObject("b", (0, 10, 5, 20)), subject) == "under"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "expected an object keyed by question_id"),
        ("{not json", "not a JSON file"),
        (
            '{"7": {"subject": {"name": "red square", "box": [0, 0, 5]}, "reference": {"name": "x", "box": [0, 0, 1, 1]}}}',
            "box must be four numbers",
        ),
        (
            '{"7": {"subject": {"name": "red square", "box": [5, 0, 5, 9]}, "reference": {"name": "x", "box": [0, 0, 1, 1]}}}',
            "empty box",
        ),
        ('{"7": {"subject": {"name": "red square", "box": [0, 0, 5, 5]}}}', "non-empty string"),
    ],
)
def test_bad_boxes_name_the_file_and_record(tmp_path: Path, content: str, message: str):
    path = tmp_path / "boxes.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as error:
        read_boxes(path)
    assert str(path) in str(error.value)
    if content.startswith('{"7"'):
        assert "7" in str(error.value)


def test_quads_join_the_distance_delta_of_the_same_scene():
    pairs = {
        "layers": np.array([2]), "pair_id": np.array(["a", "b", "c"]), "category": np.array(["far", "left", "close"]),
        "correct_orig": np.array([True, True, True]), "correct_swap": np.array([True, False, False]),
        "delta_L2": np.arange(6, dtype=np.float32).reshape(3, 2),
    }  # fmt: skip
    vertical = {
        "pair_id": np.array(["c", "a"]), "category": np.array(["under", "above"]),
        "correct_orig": np.array([True, True]), "correct_swap": np.array([True, False]),
        "delta_L2": np.array([[9, 9], [8, 8]], dtype=np.float32),
    }  # fmt: skip
    quads = cross_group_arrays(pairs, vertical)
    assert quads["category_distance"].tolist() == ["close", "far"]
    assert quads["delta_dist_L2"].tolist() == [[4, 5], [0, 1]]
    assert quads["delta_vert_L2"].tolist() == [[9, 9], [8, 8]]
    assert quads["correct_vertical"].tolist() == [True, False]
    assert quads["correct_distance"].tolist() == [False, True]
    empty = cross_group_arrays(pairs, None)
    assert set(empty) == set(quads) and empty["delta_dist_L2"].shape == (0, 2)
