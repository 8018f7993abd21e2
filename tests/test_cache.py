"""Dataset readers and caching: synthetic data round-trips; bad input names file, record, field."""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import RAW_ITEMS, RAW_SIZE, tsv_rows, write_tsv
from conftest import raw_specs as specs

from vlmflow.core.errors import InputError
from vlmflow.core.io import read_jsonl
from vlmflow.core.records import Record, image_file_stamp, read_records
from vlmflow.data.cache import FORMAT_READERS, cache_dataset
from vlmflow.data.kvasir import kvasir_question_id, read_kvasir
from vlmflow.data.select import load_case_ids, select
from vlmflow.data.swap_pairs import read_swap_pairs
from vlmflow.data.textvqa import read_textvqa
from vlmflow.data.vqav2 import read_vqav2
from vlmflow.synth import vqav2

SIZE = RAW_SIZE
N = RAW_ITEMS


@pytest.fixture
def copy(raw: Path, tmp_path: Path) -> Path:
    """A private copy of the raw data that a test may break."""
    shutil.copytree(raw, tmp_path / "raw")
    return tmp_path / "raw"


def vqav2_paths(root: Path) -> tuple[Path, Path, Path]:
    return (
        root / "vqav2/v2_OpenEnded_mscoco_val2014_questions.json",
        root / "vqav2/v2_mscoco_val2014_annotations.json",
        root / "vqav2/val2014",
    )


def edit_json(path: Path, change) -> None:
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


def mk_records(n: int) -> list[Record]:
    return [Record(str(i), f"{i}.jpg", "q?", ["a"], "d") for i in range(n)]


# --- round trips -------------------------------------------------------------------------------


def test_read_vqav2(raw: Path) -> None:
    records = read_vqav2(*vqav2_paths(raw), "vqav2_val")
    assert len(records) == vqav2.QUESTIONS_PER_IMAGE * N
    r = records[0]
    image_id = r.source["image_id"]
    assert r.image == str(raw / f"vqav2/val2014/COCO_val2014_{image_id:012d}.jpg")
    assert r.question_id == str(r.source["question_id"]) and len(r.answers) == 10
    assert r.answer_type in ("yes/no", "number", "other") and r.question_type
    assert r.dataset == "vqav2_val" and r.candidates is None
    assert set(r.source) == {"image_id", "question_id", "multiple_choice_answer"}


def test_read_textvqa(raw: Path) -> None:
    records = read_textvqa(raw / "textvqa/TextVQA_0.5.1_val.json", raw / "textvqa/train_images", "t")
    assert len(records) == 2 * N
    r = records[0]
    assert r.image == str(raw / "textvqa/train_images" / f"{r.source['image_id']}.jpg")
    assert r.question_type is None and r.answer_type is None and len(r.answers) == 10
    assert r.source["set_name"] == "val"


def test_read_kvasir_extracts_each_image_once(raw: Path, tmp_path: Path) -> None:
    records = read_kvasir(raw / "kvasir.parquet", tmp_path / "img", "kvasir")
    rows = pq.read_table(raw / "kvasir.parquet", columns=["question", "img_id"]).to_pylist()
    assert len(records) == len(rows)
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == sorted({f"{r['img_id']}.jpg" for r in rows})
    r = records[0]
    assert r.question_id == kvasir_question_id(rows[0]["img_id"], rows[0]["question"])
    assert r.question_id.startswith(rows[0]["img_id"] + "_") and len(r.question_id.split("_")[-1]) == 8
    assert len(r.answers) == 1 and r.source["row"] == 0
    assert read_kvasir(raw / "kvasir.parquet", None, "k")[0].image == ""


def test_read_kvasir_plain_binary_image(raw: Path, tmp_path: Path) -> None:
    table = pq.read_table(raw / "kvasir.parquet")
    plain = table.set_column(0, "image", pa.array([v["bytes"] for v in table.column("image").to_pylist()]))
    pq.write_table(plain, tmp_path / "plain.parquet")
    records = read_kvasir(tmp_path / "plain.parquet", tmp_path / "img", "k")
    assert len(records) == table.num_rows and Path(records[0].image).is_file()


def test_read_swap_pairs(raw: Path, tmp_path: Path) -> None:
    records = read_swap_pairs(raw / "swap.tsv", tmp_path / "img", "swap")
    assert len(records) == 2 * N
    orig, swap = records[0], records[1]
    assert orig.question_id.endswith("_orig") and swap.question_id.endswith("_swap")
    assert orig.image == swap.image and Path(orig.image).is_file()
    assert orig.question_type == orig.source["category"] == orig.answers[0]
    assert swap.question_type == swap.answers[0] != orig.question_type
    assert orig.candidates == swap.candidates and set(orig.candidates) == {
        orig.answers[0],
        swap.answers[0],
    }
    assert swap.source["role"] == "swap" and swap.source["pair_id"] == orig.source["pair_id"]
    assert len(list((tmp_path / "img").iterdir())) == N


def test_cache_dataset_round_trip(raw: Path, tmp_path: Path) -> None:
    all_specs = specs(raw)
    expected = {"vqav2_val": vqav2.QUESTIONS_PER_IMAGE * N, "textvqa_val": 2 * N, "swap": 2 * N}
    for name, spec in all_specs.items():
        out = tmp_path / f"{name}.jsonl"
        n = cache_dataset(name, spec, out, tmp_path / "images" / name, all_specs)
        rows = read_jsonl(out)
        assert n == len(rows) == expected.get(name, n) and n > 0
        records = [Record.from_json(r) for r in rows]
        assert all(Path(r.image).is_file() for r in records)
        assert all(r.image_file == image_file_stamp(r.image) for r in records)  # stamped when cached
        assert read_records(out) == records
        unstamped = [dataclasses.replace(r, image_file=None) for r in records]
        assert unstamped == FORMAT_READERS[spec["format"]](
            spec, dataset=name, images_out_dir=tmp_path / "images" / name
        )


def test_cache_dataset_options(raw: Path, tmp_path: Path) -> None:
    spec = specs(raw)["vqav2_val"]
    all_ids = [r.question_id for r in read_vqav2(*vqav2_paths(raw), "v")]
    case = tmp_path / "cases.json"
    case.write_text(json.dumps([{"question_id": int(i)} for i in all_ids[::2]]))
    spec = {**spec, "case_list": str(case), "subsample": 4, "seed": 1, "limit": 3}
    n = cache_dataset("vqav2_val", spec, tmp_path / "out.jsonl", None, {})
    ids = [r["question_id"] for r in read_jsonl(tmp_path / "out.jsonl")]
    assert n == 3 and set(ids) <= set(all_ids[::2])
    assert ids == sorted(ids, key=all_ids.index)


# --- select ------------------------------------------------------------------------------------


def test_select_limit_and_subsample() -> None:
    records = mk_records(20)
    assert [r.question_id for r in select(records, limit=3)] == ["0", "1", "2"]
    sub = select(records, subsample=5, seed=7)
    ids = [int(r.question_id) for r in sub]
    assert len(ids) == 5 and ids == sorted(ids)
    assert sub == select(records, subsample=5, seed=7) != select(records, subsample=5, seed=8)
    assert select(records, subsample=50) == records
    assert select(records, subsample=5, seed=7, limit=2) == sub[:2]


def test_select_case_list_first_keeps_dataset_order() -> None:
    records = mk_records(10)
    chosen = select(records, case_ids=["7", "2", "5", "9"], limit=2)
    assert [r.question_id for r in chosen] == ["2", "5"]
    chosen = select(records, case_ids=["7", "2", "5", "9"], subsample=4, seed=3)
    assert [r.question_id for r in chosen] == ["2", "5", "7", "9"]


def test_load_case_ids(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps([1, "2", {"question_id": 3}]))
    (tmp_path / "b.txt").write_text("4\n\n5\n")
    (tmp_path / "c.csv").write_text("question_id,note\n6,x\n7,y\n")
    assert load_case_ids(tmp_path / "a.json") == ["1", "2", "3"]
    assert load_case_ids(tmp_path / "b.txt") == ["4", "5"]
    assert load_case_ids(tmp_path / "c.csv") == ["6", "7"]
    (tmp_path / "d.json").write_text(json.dumps([{"id": 1}]))
    with pytest.raises(InputError, match=r"d\.json, record item 0, field 'question_id'"):
        load_case_ids(tmp_path / "d.json")


# --- bad input ---------------------------------------------------------------------------------


def test_malformed_json(copy: Path) -> None:
    q, a, images = vqav2_paths(copy)
    q.write_text(q.read_text()[:-40])
    with pytest.raises(InputError, match=r"questions\.json, record line \d+, column \d+: malformed JSON"):
        read_vqav2(q, a, images, "v")


def test_malformed_json_multiline(copy: Path) -> None:
    path = copy / "textvqa/TextVQA_0.5.1_val.json"
    path.write_text('{\n  "data": [\n    {"question": "x",,}\n  ]\n}\n')
    with pytest.raises(InputError, match=r"TextVQA_0\.5\.1_val\.json, record line 3, column \d+"):
        read_textvqa(path, copy / "textvqa/train_images", "t")


def test_vqav2_missing_answers(copy: Path) -> None:
    q, a, images = vqav2_paths(copy)
    qid = json.loads(a.read_text())["annotations"][2]["question_id"]
    edit_json(a, lambda o: o["annotations"][2].pop("answers"))
    with pytest.raises(
        InputError,
        match=rf"annotations\.json, record question_id {qid}, "
        r"field 'answers': missing required field",
    ):
        read_vqav2(q, a, images, "v")


def test_vqav2_answer_wrong_type(copy: Path) -> None:
    q, a, images = vqav2_paths(copy)
    qid = json.loads(a.read_text())["annotations"][0]["question_id"]
    edit_json(a, lambda o: o["annotations"][0]["answers"][3].update(answer=3))
    with pytest.raises(InputError, match=rf"annotations\.json, record question_id {qid}, field 'answers'"):
        read_vqav2(q, a, images, "v")


def test_vqav2_question_id_wrong_type(copy: Path) -> None:
    q, a, images = vqav2_paths(copy)
    edit_json(q, lambda o: o["questions"][1].update(image_id="12"))
    with pytest.raises(
        InputError,
        match=r"questions\.json, record question_id \d+, field 'image_id': "
        r"expected an integer, got str",
    ):
        read_vqav2(q, a, images, "v")


def test_textvqa_answers_not_strings(copy: Path) -> None:
    path = copy / "textvqa/TextVQA_0.5.1_val.json"
    qid = json.loads(path.read_text())["data"][1]["question_id"]
    edit_json(path, lambda o: o["data"][1].update(answers="stop"))
    with pytest.raises(InputError, match=rf"val\.json, record question_id {qid}, field 'answers': expected a list"):
        read_textvqa(path, copy / "textvqa/train_images", "t")
    edit_json(path, lambda o: o["data"][1].update(answers=["stop", None]))
    with pytest.raises(
        InputError,
        match=rf"record question_id {qid}, field 'answers': expected a non-empty list of strings",
    ):
        read_textvqa(path, copy / "textvqa/train_images", "t")


def test_duplicate_question_id(copy: Path) -> None:
    path = copy / "textvqa/TextVQA_0.5.1_val.json"
    data = json.loads(path.read_text())["data"]
    edit_json(path, lambda o: o["data"][3].update(question_id=data[0]["question_id"]))
    qid = data[0]["question_id"]
    with pytest.raises(
        InputError,
        match=rf"val\.json, record question_id {qid}, field 'question_id': "
        rf"duplicate question_id {qid} at data\[0\] and data\[3\]",
    ):
        read_textvqa(path, copy / "textvqa/train_images", "t")


def test_vqav2_duplicate_annotation(copy: Path) -> None:
    q, a, images = vqav2_paths(copy)
    edit_json(a, lambda o: o["annotations"].append(o["annotations"][1]))
    with pytest.raises(
        InputError,
        match=r"annotations\.json, record question_id \d+, field 'question_id': "
        r"duplicate question_id \d+ at annotations\[1\] and annotations\[\d+\]",
    ):
        read_vqav2(q, a, images, "v")


def test_annotation_without_question(copy: Path) -> None:
    q, a, images = vqav2_paths(copy)
    qid = json.loads(q.read_text())["questions"][-1]["question_id"]
    edit_json(q, lambda o: o["questions"].pop())
    with pytest.raises(
        InputError,
        match=rf"annotations\.json, record question_id {qid}, field "
        r"'question_id': annotation has no matching question",
    ):
        read_vqav2(q, a, images, "v")


def test_question_without_annotation(copy: Path) -> None:
    q, a, images = vqav2_paths(copy)
    qid = json.loads(a.read_text())["annotations"][0]["question_id"]
    edit_json(a, lambda o: o["annotations"].pop(0))
    with pytest.raises(
        InputError,
        match=rf"questions\.json, record question_id {qid}, field "
        r"'question_id': question has no matching annotation",
    ):
        read_vqav2(q, a, images, "v")


def test_missing_image(copy: Path) -> None:
    q, a, images = vqav2_paths(copy)
    first = json.loads(q.read_text())["questions"][0]
    image = images / f"COCO_val2014_{first['image_id']:012d}.jpg"
    image.unlink()
    with pytest.raises(
        InputError,
        match=rf"{image.name}, record question_id {first['question_id']}, "
        r"field 'image': image file not found",
    ):
        read_vqav2(q, a, images, "v")
    assert len(read_vqav2(q, a, images, "v", check_images=False)) == vqav2.QUESTIONS_PER_IMAGE * N


def test_unreadable_image(copy: Path) -> None:
    path = copy / "textvqa/TextVQA_0.5.1_val.json"
    entry = json.loads(path.read_text())["data"][0]
    image = copy / "textvqa/train_images" / f"{entry['image_id']}.jpg"
    image.write_bytes(b"not a jpeg")
    with pytest.raises(
        InputError,
        match=rf"{entry['image_id']}\.jpg, record question_id "
        rf"{entry['question_id']}, field 'image': unreadable image",
    ):
        read_textvqa(path, copy / "textvqa/train_images", "t")


def test_tsv_wrong_column_count(copy: Path) -> None:
    rows = tsv_rows(copy / "swap.tsv")
    rows[2] = rows[2][:5]
    write_tsv(copy / "swap.tsv", rows)
    with pytest.raises(InputError, match=r"swap\.tsv, record line 3: expected 9 tab-separated columns, found 5"):
        read_swap_pairs(copy / "swap.tsv", None, "s")


def test_tsv_missing_column(copy: Path) -> None:
    rows = [[v for j, v in enumerate(r) if j != 7] for r in tsv_rows(copy / "swap.tsv")]
    write_tsv(copy / "swap.tsv", rows)
    with pytest.raises(InputError, match=r"swap\.tsv, record line 1, field 'category': header lacks"):
        read_swap_pairs(copy / "swap.tsv", None, "s")


def test_tsv_bad_base64(copy: Path, tmp_path: Path) -> None:
    rows = tsv_rows(copy / "swap.tsv")
    rows[4][2] = rows[4][2][:-3] + "!!"
    write_tsv(copy / "swap.tsv", rows)
    with pytest.raises(
        InputError,
        match=rf"swap\.tsv, record line 5 \(question_id {rows[4][1]}\), "
        r"field 'image_base64': undecodable base64",
    ):
        read_swap_pairs(copy / "swap.tsv", tmp_path / "img", "s")
    assert not (tmp_path / "img").exists()  # nothing written before the whole file validated


def test_tsv_corrupt_image(copy: Path) -> None:
    rows = tsv_rows(copy / "swap.tsv")
    rows[1][2] = base64.b64encode(b"garbage").decode()
    write_tsv(copy / "swap.tsv", rows)
    with pytest.raises(
        InputError,
        match=r"record line 2 \(question_id \d+\), field 'image_base64': unreadable image",
    ):
        read_swap_pairs(copy / "swap.tsv", None, "s")


def test_tsv_duplicate_and_category(copy: Path) -> None:
    rows = tsv_rows(copy / "swap.tsv")
    write_tsv(copy / "swap.tsv", [*rows, rows[1]])
    with pytest.raises(
        InputError,
        match=rf"field 'question_id': duplicate question_id {rows[1][1]} at line 2 and "
        rf"line {len(rows) + 1}",
    ):
        read_swap_pairs(copy / "swap.tsv", None, "s")
    rows[1][7] = "below"
    write_tsv(copy / "swap.tsv", rows)
    with pytest.raises(InputError, match=r"record line 2 .*field 'category': unknown category 'below'"):
        read_swap_pairs(copy / "swap.tsv", None, "s")


def test_corrupt_parquet(copy: Path) -> None:
    path = copy / "kvasir.parquet"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match=r"kvasir\.parquet: unreadable parquet"):
        read_kvasir(path, None, "k")


def test_parquet_missing_column_and_null(copy: Path) -> None:
    path = copy / "kvasir.parquet"
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["answer"]), path)
    with pytest.raises(InputError, match=r"kvasir\.parquet, field 'answer': missing column"):
        read_kvasir(path, None, "k")
    answers = table.column("answer").to_pylist()
    answers[3] = None
    pq.write_table(table.set_column(3, "answer", pa.array(answers, pa.string())), path)
    with pytest.raises(InputError, match=r"kvasir\.parquet, record row 3, field 'answer': expected a string"):
        read_kvasir(path, None, "k")


def test_parquet_duplicate_and_bad_image(copy: Path) -> None:
    path = copy / "kvasir.parquet"
    table = pq.read_table(path)
    pq.write_table(pa.concat_tables([table, table.slice(2, 1)]), path)
    with pytest.raises(InputError, match=rf"duplicate question_id \S+ at row 2 and row {table.num_rows}"):
        read_kvasir(path, None, "k")
    images = table.column("image").to_pylist()
    images[0] = {"bytes": b"garbage", "path": "x.jpg"}
    image_type = table.schema.field("image").type
    pq.write_table(table.set_column(0, "image", pa.array(images, image_type)), path)
    with pytest.raises(InputError, match=r"record row 0 \(question_id cl\w+\), field 'image': unreadable image"):
        read_kvasir(path, None, "k")


def test_case_list_matching_other_dataset(raw: Path, tmp_path: Path) -> None:
    all_specs = specs(raw)
    vqa_ids = [r.question_id for r in read_vqav2(*vqav2_paths(raw), "v")]
    case = tmp_path / "textvqa" / "on_correct_off_wrong_nontrunc.json"
    case.parent.mkdir()
    case.write_text(json.dumps([{"question_id": int(i)} for i in vqa_ids]))
    spec = {**all_specs["textvqa_val"], "case_list": str(case)}
    out = tmp_path / "textvqa_val.jsonl"
    out.write_text("previous cache\n")
    n = len(vqa_ids)
    with pytest.raises(
        InputError,
        match=rf"on_correct_off_wrong_nontrunc\.json, field 'question_id': "
        rf"{n} of {n} ids are not in dataset 'textvqa_val' \(e\.g\. .*\); they match "
        r"dataset 'vqav2_val' — is this a vqav2 case list\?",
    ):
        cache_dataset("textvqa_val", spec, out, None, all_specs)
    assert out.read_text() == "previous cache\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["textvqa", "textvqa_val.jsonl"]


def test_case_list_partly_missing(raw: Path, tmp_path: Path) -> None:
    spec = specs(raw)["textvqa_val"]
    ids = [r.question_id for r in read_textvqa(Path(spec["json"]), Path(spec["images"]), "t")]
    case = tmp_path / "cases.txt"
    case.write_text("\n".join([ids[0], "nope-1", ids[1], "nope-2"]))
    with pytest.raises(
        InputError,
        match=r"cases\.txt, field 'question_id': 2 of 4 ids are not in "
        r"dataset 'textvqa_val' \(e\.g\. 'nope-1', 'nope-2'\)$",
    ):
        cache_dataset("textvqa_val", {**spec, "case_list": str(case)}, tmp_path / "o.jsonl", None, specs(raw))
    assert not (tmp_path / "o.jsonl").exists()


def test_failed_read_leaves_existing_cache_untouched(copy: Path, tmp_path: Path) -> None:
    all_specs = specs(copy)
    out = tmp_path / "vqav2_val.jsonl"
    cache_dataset("vqav2_val", all_specs["vqav2_val"], out, None, all_specs)
    before = out.read_bytes()
    q, _, _ = vqav2_paths(copy)
    edit_json(q, lambda o: o["questions"][0].pop("question"))
    with pytest.raises(InputError, match=r"field 'question': missing required field"):
        cache_dataset("vqav2_val", all_specs["vqav2_val"], out, None, all_specs)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name != "raw"] == ["vqav2_val.jsonl"]


def test_images_are_checked_and_extracted_only_for_kept_records(copy: Path, tmp_path: Path) -> None:
    """`limit` on a large parquet must not extract (or trip over) images it does not keep."""
    all_specs = specs(copy)
    kvasir = read_kvasir(copy / "kvasir.parquet", None, "k", check_images=False)
    out_images = tmp_path / "kvasir_images"
    n = cache_dataset("kvasir", {**all_specs["kvasir"], "limit": 2}, tmp_path / "k.jsonl", out_images, all_specs)
    kept = [Record.from_json(r) for r in read_jsonl(tmp_path / "k.jsonl")]
    assert n == 2 and [r.question_id for r in kept] == [r.question_id for r in kvasir[:2]]
    assert sorted(p.name for p in out_images.iterdir()) == sorted({f"{r.source['img_id']}.jpg" for r in kept})

    q, _, images = vqav2_paths(copy)
    last = json.loads(q.read_text())["questions"][-1]
    (images / f"COCO_val2014_{last['image_id']:012d}.jpg").unlink()  # outside the first 3 questions
    spec = {**all_specs["vqav2_val"], "limit": 3}
    assert cache_dataset("vqav2_val", spec, tmp_path / "v.jsonl", None, all_specs) == 3
    with pytest.raises(InputError, match="image file not found"):
        cache_dataset("vqav2_val", {**spec, "limit": None}, tmp_path / "v.jsonl", None, all_specs)
