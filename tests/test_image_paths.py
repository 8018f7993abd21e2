"""Issue 19 (4-6): image ids stay inside their folder, images decode in full at cache time, an image
replaced after caching is named when the cache is read, and a failed cache writes nothing."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import RAW_ITEMS, RAW_SIZE, tsv_rows, write_tsv
from conftest import raw_specs as specs
from PIL import Image

from vlmflow.core.errors import InputError
from vlmflow.core.io import read_jsonl, write_jsonl
from vlmflow.core.records import Record, read_records
from vlmflow.data.cache import cache_dataset
from vlmflow.data.common import image_path
from vlmflow.data.kvasir import read_kvasir
from vlmflow.data.swap_pairs import read_swap_pairs
from vlmflow.data.textvqa import read_textvqa
from vlmflow.data.vqav2 import read_vqav2

REPO = Path(__file__).resolve().parents[1]
SIZE = RAW_SIZE
N = RAW_ITEMS


@pytest.fixture
def work(raw: Path, tmp_path: Path) -> Path:
    """A private tree: raw/ (a copy that a test may break) and, later, results/."""
    shutil.copytree(raw, tmp_path / "raw")
    return tmp_path


def cache(work: Path, name: str) -> tuple[Path, Path | None]:
    """Cache dataset `name` of work/raw as the workflow lays it out; returns (jsonl, images)."""
    all_specs = specs(work / "raw")
    spec = all_specs[name]
    out = work / "results" / "cache" / f"{name}.jsonl"
    images = work / "results" / "cache" / name / "images" if spec["format"] in ("kvasir", "swap_pairs") else None
    cache_dataset(name, spec, out, images, all_specs)
    return out, images


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` (folders as None), to compare a tree before and after."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def edit_json(path: Path, change) -> None:
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


def set_kvasir_column(path: Path, column: str, change) -> list:
    table = pq.read_table(path)
    values = table.column(column).to_pylist()
    change(values)
    index = table.schema.get_field_index(column)
    pq.write_table(table.set_column(index, column, pa.array(values, table.schema.field(column).type)), path)
    return values


def noisy_jpeg(seed: int = 0, size: int = 96) -> bytes:
    """A valid JPEG whose scan data is most of the file, so cutting it in half cuts pixels."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def truncated_jpeg() -> bytes:
    """A valid JPEG cut in half: `Image.verify()` passes it (it does not decode JPEG data)."""
    data = noisy_jpeg()
    half = data[: len(data) // 2]
    with Image.open(io.BytesIO(half)) as im:
        im.verify()  # the old check: no error
    return half


# --- 4. image ids stay inside their folder -----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../../x.jpg", "holds a path separator"),
        ("/etc/x.jpg", "is an absolute path"),
        ("a\\b.jpg", "holds a path separator"),
        ("...jpg", "starts with a dot"),
        ("", "is empty"),
    ],
)
def test_image_path_rejects_names_leaving_the_folder(tmp_path: Path, name: str, problem: str) -> None:
    with pytest.raises(InputError, match=rf"data\.json, record r 1, field 'id': unusable image file name .*{problem}"):
        image_path(tmp_path, name, Path("data.json"), "r 1", "id")
    with pytest.raises(InputError, match=problem):
        image_path(None, name, Path("data.json"), "r 1", "id")  # checked even when nothing is extracted
    assert image_path(tmp_path, "ok.jpg", Path("d"), "r", "f") == str(tmp_path / "ok.jpg")
    assert image_path(None, "ok.jpg", Path("d"), "r", "f") == ""


def test_kvasir_img_id_cannot_write_outside(work: Path) -> None:
    victim = work / "victim.jpg"
    victim.write_bytes(b"precious")
    parquet = work / "raw" / "kvasir.parquet"
    original = pq.read_table(parquet)
    images = work / "results" / "cache" / "kvasir" / "images"
    # ../../x from results/cache/kvasir/images is results/cache/x; ../../../../victim is victim.jpg
    for bad, problem in (
        ("../../x", "holds a path separator"),
        ("../../../../victim", "holds a path separator"),
        (str(work / "outside" / "x"), "is an absolute path"),
    ):
        pq.write_table(original, parquet)
        set_kvasir_column(parquet, "img_id", lambda ids, bad=bad: ids.__setitem__(1, bad))
        before = tree(work)
        with pytest.raises(
            InputError, match=rf"kvasir\.parquet, record row 1, field 'img_id': unusable image file name .*{problem}"
        ):
            cache(work, "kvasir")
        assert tree(work) == before, bad  # nothing written anywhere: not outside, not results/
        with pytest.raises(InputError, match=r"record row 1, field 'img_id'"):
            read_kvasir(parquet, images, "k")
        assert tree(work) == before, bad
    assert victim.read_bytes() == b"precious" and not (work / "results").exists()


def test_textvqa_image_id_cannot_read_outside(work: Path) -> None:
    path = work / "raw/textvqa/TextVQA_0.5.1_val.json"
    qid = json.loads(path.read_text())["data"][2]["question_id"]
    for bad in ("../..", "../../raw/textvqa/train_images/x", str(work / "x")):
        edit_json(path, lambda o, bad=bad: o["data"][2].update(image_id=bad))
        with pytest.raises(
            InputError, match=rf"val\.json, record question_id {qid}, field 'image_id': unusable image file name"
        ):
            read_textvqa(path, work / "raw/textvqa/train_images", "t", check_images=False)
        with pytest.raises(InputError, match=rf"record question_id {qid}, field 'image_id'"):
            cache(work, "textvqa_val")
    assert not (work / "results").exists()


def test_vqav2_image_name_cannot_read_outside(work: Path) -> None:
    spec = specs(work / "raw")["vqav2_val"]
    q = Path(spec["questions"])
    for bad in ("../../../x", str(work / "x")):
        edit_json(q, lambda o, bad=bad: o.update(data_subtype=bad))
        with pytest.raises(
            InputError,
            match=r"questions\.json, record top level, field 'data_subtype': unusable image file name 'COCO_",
        ):
            read_vqav2(q, Path(spec["annotations"]), Path(spec["images"]), "v", check_images=False)
        with pytest.raises(InputError, match=r"field 'data_subtype'"):
            cache(work, "vqav2_val")
    assert not (work / "results").exists()


def test_swap_pair_question_id_cannot_write_outside(work: Path) -> None:
    tsv = work / "raw" / "swap.tsv"
    original = tsv_rows(tsv)
    for bad, problem in (("../../x", "holds a path separator"), (str(work / "x"), "is an absolute path")):
        rows = [list(r) for r in original]
        rows[2][1] = bad
        write_tsv(tsv, rows)
        before = tree(work)
        with pytest.raises(
            InputError, match=rf"swap\.tsv, record line 3, field 'question_id': unusable image file name .*{problem}"
        ):
            cache(work, "swap")
        with pytest.raises(InputError, match=r"record line 3, field 'question_id'"):
            read_swap_pairs(tsv, None, "s")
        assert tree(work) == before
    assert not (work / "results").exists()


# --- 5a. truncated images fail caching ---------------------------------------------------------


def test_truncated_jpeg_fails_caching_vqav2(work: Path) -> None:
    spec = specs(work / "raw")["vqav2_val"]
    first = json.loads(Path(spec["questions"]).read_text())["questions"][0]
    image = Path(spec["images"]) / f"COCO_val2014_{first['image_id']:012d}.jpg"
    image.write_bytes(truncated_jpeg())
    with pytest.raises(
        InputError,
        match=rf"{image.name}, record question_id {first['question_id']}, field 'image': "
        r"unreadable image \(image file is truncated",
    ):
        cache(work, "vqav2_val")
    assert not (work / "results").exists()


def test_truncated_jpeg_fails_caching_textvqa(work: Path) -> None:
    spec = specs(work / "raw")["textvqa_val"]
    entry = json.loads(Path(spec["json"]).read_text())["data"][0]
    image = Path(spec["images"]) / f"{entry['image_id']}.jpg"
    image.write_bytes(truncated_jpeg())
    with pytest.raises(
        InputError,
        match=rf"{image.name}, record question_id {entry['question_id']}, field 'image': "
        r"unreadable image \(image file is truncated",
    ):
        cache(work, "textvqa_val")


def test_truncated_jpeg_fails_caching_kvasir(work: Path) -> None:
    parquet = work / "raw" / "kvasir.parquet"
    set_kvasir_column(parquet, "image", lambda v: v.__setitem__(0, {"bytes": truncated_jpeg(), "path": "x.jpg"}))
    qid = read_kvasir(parquet, None, "k", check_images=False)[0].question_id
    with pytest.raises(
        InputError,
        match=rf"kvasir\.parquet, record row 0 \(question_id {qid}\), field 'image': "
        r"unreadable image \(image file is truncated",
    ):
        cache(work, "kvasir")
    assert not (work / "results").exists()


def test_truncated_jpeg_fails_caching_swap_pairs(work: Path) -> None:
    tsv = work / "raw" / "swap.tsv"
    rows = tsv_rows(tsv)
    rows[1][2] = base64.b64encode(truncated_jpeg()).decode()
    write_tsv(tsv, rows)
    with pytest.raises(
        InputError,
        match=rf"swap\.tsv, record line 2 \(question_id {rows[1][1]}\), field 'image_base64': "
        r"unreadable image \(image file is truncated",
    ):
        cache(work, "swap")
    assert not (work / "results").exists()


def test_truncation_is_caught_even_when_pillow_tolerates_it(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Some libraries switch Pillow's LOAD_TRUNCATED_IMAGES on globally; the cache check still fails."""
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    test_truncated_jpeg_fails_caching_textvqa(work)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored afterwards


# --- 5b. an image replaced after caching -------------------------------------------------------


def replace_image(path: Path, data: bytes) -> None:
    stat = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))


@pytest.mark.parametrize("name", ["vqav2_val", "textvqa_val", "kvasir", "swap"])
def test_image_replaced_after_caching_is_named(work: Path, name: str) -> None:
    out, _ = cache(work, name)
    records = read_records(out)
    assert all(r.image_file for r in records)
    target = records[-1]
    replace_image(Path(target.image), noisy_jpeg(seed=1, size=32))
    with pytest.raises(InputError) as caught:
        read_records(out)
    message = str(caught.value)
    assert message.startswith(f"{target.image}, record question_id ")
    assert f" in {out}, field 'image': its size changed from {target.image_file['size']} to " in message
    assert f"Re-cache the dataset: snakemake --forcerun {out} (or delete {out})" in message
    assert read_records(out, check_images=False) == records  # a stage that needs no image may opt out


@pytest.mark.parametrize("name", ["vqav2_val", "textvqa_val", "kvasir", "swap"])
def test_recaching_unchanged_input_gives_an_identical_cache(work: Path, name: str) -> None:
    """Extracted images are dated like their parquet / TSV, so the stamps (and the cache bytes,
    which later stages hash into their resume keys) do not change when nothing did."""
    out, _ = cache(work, name)
    first = out.read_bytes()
    cache(work, name)
    assert out.read_bytes() == first


def test_same_size_replacement_is_found_by_hash_and_a_touch_is_not_a_change(work: Path) -> None:
    out, _ = cache(work, "textvqa_val")
    image = Path(read_records(out)[0].image)
    data = image.read_bytes()
    os.utime(image, ns=(0, image.stat().st_mtime_ns + 10**9))  # touched (or copied): same bytes
    assert read_records(out)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    replace_image(image, bytes(flipped))
    with pytest.raises(InputError, match=r"field 'image': its content changed \(same size, modified "):
        read_records(out)


def test_deleted_image_and_concatenated_caches(work: Path) -> None:
    first, _ = cache(work, "textvqa_val")
    second, _ = cache(work, "kvasir")
    records = read_records([first, second])
    assert {r.dataset for r in records} == {"textvqa_val", "kvasir"}
    Path(records[-1].image).unlink()
    with pytest.raises(InputError, match=rf"the image no longer exists since {second} was written"):
        read_records([first, second])


def test_cache_written_before_stamps_is_read_without_the_check(work: Path) -> None:
    """Compatibility: a record without `image_file` (an older cache) is accepted as it is."""
    out, _ = cache(work, "textvqa_val")
    rows = read_jsonl(out)
    for row in rows:
        del row["image_file"]
    write_jsonl(out, rows)
    replace_image(Path(rows[0]["image"]), noisy_jpeg(seed=2, size=32))
    records = read_records(out)
    assert records[0].image_file is None and len(records) == len(rows)
    assert "image_file" not in Record("1", "a.jpg", "q?", ["a"], "d").to_json()


# --- 6. a failed cache writes nothing; the workflow says what was removed ----------------------


def break_last_kvasir_image(parquet: Path) -> int:
    """Truncate the image of the last img_id, so every other image is extracted before it fails."""
    img_ids = pq.read_table(parquet, columns=["img_id"]).column("img_id").to_pylist()
    row = max(img_ids.index(i) for i in set(img_ids))
    set_kvasir_column(parquet, "image", lambda v: v.__setitem__(row, {"bytes": truncated_jpeg(), "path": "x"}))
    return row


def test_failed_kvasir_cache_leaves_no_images_behind(work: Path) -> None:
    row = break_last_kvasir_image(work / "raw" / "kvasir.parquet")
    assert row > 0
    before = tree(work)
    with pytest.raises(InputError, match=rf"record row {row} .*field 'image': unreadable image"):
        cache(work, "kvasir")
    assert tree(work) == before and not (work / "results").exists()


def test_failed_recache_keeps_the_previous_cache_and_images_when_called_as_a_library(work: Path) -> None:
    def break_swap_image() -> None:
        rows = tsv_rows(work / "raw" / "swap.tsv")
        rows[-1][2] = base64.b64encode(truncated_jpeg()).decode()
        write_tsv(work / "raw" / "swap.tsv", rows)

    for name, breaks in (
        ("kvasir", lambda: break_last_kvasir_image(work / "raw" / "kvasir.parquet")),
        ("swap", break_swap_image),
    ):
        out, images = cache(work, name)
        before = tree(work / "results")
        breaks()
        with pytest.raises(InputError):
            cache(work, name)
        assert tree(work / "results") == before, name  # no temporary folder left either


def test_successful_extraction_replaces_the_images_folder(work: Path) -> None:
    _, images = cache(work, "kvasir")
    (images / "stale.jpg").write_bytes(b"from an earlier run")
    out, images = cache(work, "kvasir")
    assert "stale.jpg" not in {p.name for p in images.iterdir()}
    assert {Path(r.image) for r in read_records(out)} == set(images.iterdir())
    assert [p.name for p in images.parent.iterdir()] == ["images"]  # no temporary folder left


def test_workflow_script_says_the_previous_cache_was_removed(work: Path) -> None:
    """The glue re-raises the error with a note: Snakemake removed the old outputs before the job."""
    set_kvasir_column(work / "raw" / "kvasir.parquet", "img_id", lambda ids: ids.__setitem__(0, "../../x"))
    code = f"""
import json, runpy, types
datasets = json.loads({json.dumps(json.dumps(specs(work / "raw")))})
class Output(dict):
    __getattr__ = dict.__getitem__
output = Output(cache="results/cache/kvasir.jsonl", images="results/cache/kvasir/images")
snakemake = types.SimpleNamespace(
    log=["logs/cache/kvasir.log"], wildcards=types.SimpleNamespace(dataset="kvasir"),
    config={{"datasets": datasets}}, output=output,
)
runpy.run_path({str(REPO / "workflow/scripts/data/cache.py")!r}, init_globals={{"snakemake": snakemake}})
"""
    run = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    log = (work / "logs/cache/kvasir.log").read_text()
    assert "field 'img_id': unusable image file name '../../x.jpg'" in log
    assert (
        "The previous results/cache/kvasir.jsonl and results/cache/kvasir/images of dataset 'kvasir' (if any) "
        "were removed by Snakemake before this job started" in log
    )
    assert "snakemake results/cache/kvasir.jsonl" in log
    assert not (work / "results").exists()
