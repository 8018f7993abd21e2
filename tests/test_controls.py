"""The blank-image control: the same records, every image a uniform grey of its size."""

from __future__ import annotations

import numpy as np
from PIL import Image

from vlmflow.core.io import write_jsonl
from vlmflow.core.records import Record, image_file_stamp, read_records
from vlmflow.data.controls import BLANK_GREY, blank_image_records, image_sizes, write_blank_images


def test_blank_control_keeps_every_record_but_its_pixels(tmp_path):
    records = []
    for index, size in enumerate([(40, 30), (64, 64), (40, 30)]):
        path = tmp_path / f"img{index}.jpg"
        Image.effect_noise(size, 60).convert("RGB").save(path)
        records.append(Record(f"q{index}", str(path), f"question {index}?", ["a"], "toy", "what", "other",
                              candidates=["a", "b"], source={"pair_id": "p"}, image_file=image_file_stamp(path)))  # fmt: skip
    sizes = image_sizes(records)
    blank_dir = tmp_path / "blank"
    blank_dir.mkdir()
    write_blank_images(sizes, blank_dir)
    blanked = blank_image_records(records, sizes, blank_dir)
    assert sorted(p.name for p in blank_dir.iterdir()) == ["blank-40x30.png", "blank-64x64.png"]
    for original, control in zip(records, blanked, strict=True):
        with Image.open(control.image) as image:
            assert image.size == Image.open(original.image).size
            assert np.unique(np.asarray(image).reshape(-1, 3), axis=0).tolist() == [list(BLANK_GREY)]
        same = {k: v for k, v in original.to_json().items() if k not in ("image", "image_file")}
        assert {k: v for k, v in control.to_json().items() if k in same} == same
    cache = tmp_path / "control.jsonl"
    write_jsonl(cache, (r.to_json() for r in blanked))
    assert read_records(cache) == blanked  # the stamps match the blank files
