"""The generic dataset formats (jsonl, csv, parquet, hf_datasets) and image files of any suffix
Pillow reads: real files written here, read into records, cached, and broken one way at a time."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import raw_specs
from PIL import Image

from vlmflow.core.errors import InputError
from vlmflow.core.io import read_jsonl
from vlmflow.core.records import read_records
from vlmflow.data.cache import FORMAT_READERS, cache_dataset
from vlmflow.data.flat import read_csv_questions, read_jsonl_questions
from vlmflow.data.hub import read_hf_dataset, read_parquet_questions
from vlmflow.data.textvqa import read_textvqa
from vlmflow.data.vqav2 import read_vqav2

COLORS = [(200, 30, 30), (30, 160, 60), (30, 60, 200)]
IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
VQA_ANSWERS = pa.list_(
    pa.struct([("answer", pa.string()), ("answer_confidence", pa.string()), ("answer_id", pa.int64())])
)


def png(color: tuple[int, int, int], size: int = 12) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def save_image(path: Path, color: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 12), color).save(path, lossless=True)  # WebP too keeps the exact colour
    return path


def pixel(image: str) -> tuple[int, int, int]:
    with Image.open(image) as im:
        return im.convert("RGB").getpixel((0, 0))


# --- writers: the layouts researchers hold their data in ----------------------------------------


def write_jsonl(path: Path, rows: list[dict | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def jsonl_dataset(root: Path) -> Path:
    """Three questions on two images: relative .png and .bmp paths, and an absolute .tiff one."""
    save_image(root / "images/a.png", COLORS[0])
    save_image(root / "images/b.bmp", COLORS[1])
    absolute = save_image(root / "elsewhere/c.tiff", COLORS[2])
    return write_jsonl(
        root / "data/questions.jsonl",
        [
            {"question_id": 7, "question": "What colour?", "answers": ["red", "dark red"], "image": "../images/a.png"},
            {
                "question_id": "q8",
                "question": "Shape?",
                "answers": "square",
                "image": "../images/b.bmp",
                "question_type": "what shape",
                "answer_type": "other",
            },  # fmt: skip
            {"question_id": 9, "question": "Blue?", "answers": [{"answer": "yes"}] * 3, "image": str(absolute)},
        ],
    )


def csv_dataset(root: Path, lines: list[str] | None = None) -> Path:
    save_image(root / "images/a.png", COLORS[0])
    save_image(root / "images/b.webp", COLORS[1])
    path = root / "questions.csv"
    path.write_text(
        "\n".join(
            lines
            or [
                "question_id,question,answers,image,question_type",
                '1,"Red, or blue?",red|dark red,images/a.png,what color',
                "2,Is it green?,yes,images/b.webp,",
            ]
        )
        + "\n"
    )
    return path


def vqa_table(ids: list[int], colors: list[int], rename: dict[str, str] | None = None) -> pa.Table:
    """Rows as the lmms-lab/VQAv2 export has them: answers as {answer, ...} structs, image structs."""
    rename = rename or {}
    columns = {
        "question_id": pa.array(ids, pa.int64()),
        "question": pa.array([f"Question {i}?" for i in ids]),
        "answers": pa.array(
            [[{"answer": f"answer {i}", "answer_confidence": "yes", "answer_id": k} for k in range(1, 4)] for i in ids],
            VQA_ANSWERS,
        ),
        "image": pa.array([{"bytes": png(COLORS[c]), "path": f"{i}.png"} for i, c in zip(ids, colors)], IMAGE_TYPE),
        "question_type": pa.array(["what color"] * len(ids)),
        "answer_type": pa.array(["other"] * len(ids)),
    }
    return pa.table({rename.get(name, name): values for name, values in columns.items()})


def write_hf_dataset(folder: Path, shards: list[pa.Table], order: list[int] | None = None) -> Path:
    """A folder as `Dataset.save_to_disk` writes it: Arrow IPC stream shards named
    data-0000i-of-0000n.arrow, their order in state.json, the features in dataset_info.json."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data-{i:05d}-of-{len(shards):05d}.arrow" for i in range(len(shards))]
    features = {"image": {"_type": "Image"}, "question": {"dtype": "string", "_type": "Value"}}
    for name, table in zip(names, shards):
        schema = table.schema.with_metadata({"huggingface": json.dumps({"info": {"features": features}})})
        with pa.OSFile(str(folder / name), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            for batch in table.cast(schema).to_batches(max_chunksize=2):
                writer.write_batch(batch)
    (folder / "dataset_info.json").write_text(json.dumps({"features": features, "splits": {}}))
    state = {
        "_data_files": [{"filename": names[i]} for i in (order or range(len(shards)))],
        "_fingerprint": "0123456789abcdef",
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": "validation",
    }
    (folder / "state.json").write_text(json.dumps(state))
    return folder


# --- reading each format ------------------------------------------------------------------------


def test_read_jsonl(tmp_path: Path) -> None:
    path = jsonl_dataset(tmp_path)
    records = read_jsonl_questions(path, "j")
    assert [r.question_id for r in records] == ["7", "q8", "9"]
    assert [r.answers for r in records] == [["red", "dark red"], ["square"], ["yes", "yes", "yes"]]
    assert records[0].question == "What colour?" and records[0].dataset == "j"
    assert (records[0].question_type, records[1].question_type, records[1].answer_type) == (None, "what shape", "other")
    assert [pixel(r.image) for r in records] == COLORS
    assert records[0].image == str(path.parent / "../images/a.png") and records[0].source == {"line": 1}


def test_read_jsonl_default_ids_and_columns(tmp_path: Path) -> None:
    save_image(tmp_path / "a.png", COLORS[0])
    row = {"query": "Red?", "gt": ["yes"], "img": "a.png"}
    path = write_jsonl(tmp_path / "q.jsonl", [row, "", row])
    records = read_jsonl_questions(path, "j", {"question": "query", "answers": "gt", "image": "img"})
    assert [r.question_id for r in records] == ["1", "3"]  # line numbers; the blank line is skipped
    assert records[1].question == "Red?" and records[1].answers == ["yes"]


def test_read_csv(tmp_path: Path) -> None:
    path = csv_dataset(tmp_path)
    records = read_csv_questions(path, "c")
    assert [r.question_id for r in records] == ["1", "2"]
    assert records[0].question == "Red, or blue?" and records[0].answers == ["red", "dark red"]
    assert (records[0].question_type, records[1].question_type, records[1].answer_type) == ("what color", None, None)
    assert [pixel(r.image) for r in records] == COLORS[:2] and records[1].image.endswith("b.webp")


def test_read_parquet_shards(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    pq.write_table(vqa_table([10, 11, 12], [0, 0, 1]), folder / "validation-00000-of-00002.parquet")
    pq.write_table(vqa_table([13], [2]), folder / "validation-00001-of-00002.parquet")
    pq.write_table(vqa_table([99], [2]), folder / "test-00000-of-00001.parquet")
    out = tmp_path / "images"
    records = read_parquet_questions(folder / "validation-*.parquet", out, "p")
    assert [r.question_id for r in records] == ["10", "11", "12", "13"]
    assert records[0].answers == ["answer 10"] * 3 and records[0].question == "Question 10?"
    assert (records[0].question_type, records[0].answer_type) == ("what color", "other")
    assert [pixel(r.image) for r in records] == [COLORS[0], COLORS[0], COLORS[1], COLORS[2]]
    assert records[0].image == records[1].image  # one file per distinct image, named by its content
    assert sorted(p.suffix for p in out.iterdir()) == [".png"] * 3
    assert records[3].source == {"file": "validation-00001-of-00002.parquet", "row": 0}
    # a folder takes every parquet in it, sorted
    assert [r.question_id for r in read_parquet_questions(folder, None, "p")] == ["99", "10", "11", "12", "13"]


def test_read_parquet_columns_and_plain_answers(tmp_path: Path) -> None:
    table = vqa_table([1, 2], [0, 1], rename={"question": "query", "image": "img"})
    table = table.drop_columns(["question_id", "answers"]).append_column("gt", pa.array([["a", "b"], ["c"]]))
    pq.write_table(table, tmp_path / "t.parquet")
    records = read_parquet_questions(
        tmp_path / "t.parquet", tmp_path / "out", "p", {"question": "query", "answers": "gt", "image": "img"}
    )
    assert [(r.question_id, r.question, r.answers) for r in records] == [
        ("0", "Question 1?", ["a", "b"]),
        ("1", "Question 2?", ["c"]),
    ]


def test_read_hf_dataset(tmp_path: Path) -> None:
    first = vqa_table([1, 2, 3], [0, 1, 1]).drop_columns(["question_id"])
    second = vqa_table([4, 5], [2, 0]).drop_columns(["question_id"])
    folder = write_hf_dataset(tmp_path / "textvqa_val", [second, first], order=[1, 0])
    out = tmp_path / "images"
    records = read_hf_dataset(folder, out, "h")
    # state.json lists the second file first; ids count rows from 0 across the shards
    assert [(r.question_id, r.question) for r in records] == [(str(i), f"Question {i + 1}?") for i in range(5)]
    assert records[3].source == {"file": "data-00000-of-00002.arrow", "row": 0}
    assert [pixel(r.image) for r in records] == [COLORS[c] for c in (0, 1, 1, 2, 0)]
    assert len(list(out.iterdir())) == 3


def test_read_hf_dataset_image_paths(tmp_path: Path) -> None:
    """An Image feature built from files without embedding them keeps only the path."""
    save_image(tmp_path / "pics/a.png", COLORS[0])
    table = pa.table(
        {
            "question": ["Red?", "Red again?"],
            "answers": [["yes"], ["yes"]],
            "image": pa.array([{"bytes": None, "path": str(tmp_path / "pics/a.png")}] * 2, IMAGE_TYPE),
        }
    )
    records = read_hf_dataset(write_hf_dataset(tmp_path / "ds", [table]), tmp_path / "out", "h")
    assert {r.image for r in records} == {str(tmp_path / "pics/a.png")}


# --- image files of any suffix Pillow reads -----------------------------------------------------


@pytest.fixture
def copy(raw: Path, tmp_path: Path) -> Path:
    shutil.copytree(raw, tmp_path / "raw")
    return tmp_path / "raw"


def vqav2_args(root: Path) -> tuple[Path, Path, Path]:
    spec = raw_specs(root)["vqav2_val"]
    return Path(spec["questions"]), Path(spec["annotations"]), Path(spec["images"])


def test_vqav2_finds_png_for_missing_jpg(copy: Path) -> None:
    q, a, images = vqav2_args(copy)
    for jpg in images.glob("*.jpg"):  # the whole folder converted to PNG
        with Image.open(jpg) as im:
            im.save(jpg.with_suffix(".png"))
        jpg.unlink()
    records = read_vqav2(q, a, images, "v")
    assert all(r.image.endswith(".png") and Path(r.image).is_file() for r in records)


def test_textvqa_finds_other_suffix_and_refuses_ambiguity(copy: Path) -> None:
    json_path, images = copy / "textvqa/TextVQA_0.5.1_val.json", copy / "textvqa/train_images"
    entry = json.loads(json_path.read_text())["data"][0]
    jpg = images / f"{entry['image_id']}.jpg"
    with Image.open(jpg) as im:
        im.save(jpg.with_suffix(".jpeg"))
    jpg.unlink()
    assert read_textvqa(json_path, images, "t")[0].image == str(jpg.with_suffix(".jpeg"))
    save_image(jpg.with_suffix(".webp"), COLORS[0])
    with pytest.raises(
        InputError,
        match=rf"{jpg.name}, record question_id {entry['question_id']}, field 'image': image file not found, "
        rf"and 2 files share its stem \({entry['image_id']}\.jpeg, {entry['image_id']}\.webp\)",
    ):
        read_textvqa(json_path, images, "t")
    jpg.with_suffix(".jpeg").unlink()
    jpg.with_suffix(".webp").unlink()
    with pytest.raises(InputError, match=rf"{jpg.name}, record question_id \d+, field 'image': image file not found$"):
        read_textvqa(json_path, images, "t")


# --- bad input: each error names the file, the record and the field -----------------------------


def test_jsonl_bad_lines(tmp_path: Path) -> None:
    path = jsonl_dataset(tmp_path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1][:-1]]) + "\n")
    with pytest.raises(InputError, match=r"questions\.jsonl, record line 2, column \d+: malformed JSON"):
        read_jsonl_questions(path, "j")
    row = json.loads(lines[1])
    del row["answers"]
    write_jsonl(path, [lines[0], row])
    with pytest.raises(InputError, match=r"questions\.jsonl, record line 2, field 'answers': missing required field"):
        read_jsonl_questions(path, "j")
    write_jsonl(path, [lines[0], {**row, "answers": 5}])
    with pytest.raises(
        InputError,
        match=r"questions\.jsonl, record line 2 \(question_id q8\), field 'answers': expected an answer or a non-empty "
        r"list of answers, got int",
    ):
        read_jsonl_questions(path, "j")
    write_jsonl(path, [lines[0], {**row, "answers": ["a", 3]}])
    with pytest.raises(InputError, match=r"record line 2 \(question_id q8\), field 'answers': expected a list of str"):
        read_jsonl_questions(path, "j")
    write_jsonl(path, [lines[0], {**row, "answers": "a", "question_id": 1.5}])
    with pytest.raises(InputError, match=r"record line 2, field 'question_id': expected a string or an integer"):
        read_jsonl_questions(path, "j")
    write_jsonl(path, [lines[0], {**row, "answers": "a", "question_id": 7}])
    with pytest.raises(
        InputError, match=r"questions\.jsonl, record question_id 7, .*duplicate question_id 7 at line 1"
    ):
        read_jsonl_questions(path, "j")


def test_jsonl_missing_and_unreadable_image(tmp_path: Path) -> None:
    path = jsonl_dataset(tmp_path)
    (tmp_path / "images/b.bmp").unlink()
    with pytest.raises(
        InputError,
        match=r"questions\.jsonl, record line 2 \(question_id q8\), field 'image': image file not found: .*b\.bmp",
    ):
        read_jsonl_questions(path, "j")
    assert len(read_jsonl_questions(path, "j", only={"7", "9"})) == 3  # only the kept records' images
    (tmp_path / "images/a.png").write_bytes(b"not a png")
    with pytest.raises(
        InputError, match=r"questions\.jsonl, record line 1 \(question_id 7\), field 'image': unreadable image .*a\.png"
    ):
        read_jsonl_questions(path, "j", only={"7"})


def test_csv_bad_rows(tmp_path: Path) -> None:
    header = "question_id,question,answers,image"
    path = csv_dataset(tmp_path, ["question_id,question,answers", "1,Red?,red"])
    with pytest.raises(InputError, match=r"questions\.csv, record line 1, field 'image': header lacks column 'image'"):
        read_csv_questions(path, "c")
    csv_dataset(tmp_path, [header, "1,Red?,red|,images/a.png"])
    with pytest.raises(
        InputError, match=r"questions\.csv, record line 2 \(question_id 1\), field 'answers': empty answer in 'red\|'"
    ):
        read_csv_questions(path, "c")
    csv_dataset(tmp_path, [header, "1,Red?,red,images/a.png", "2,Green?,yes,images/none.png"])
    with pytest.raises(
        InputError, match=r"questions\.csv, record line 3 \(question_id 2\), field 'image': image file not found"
    ):
        read_csv_questions(path, "c")
    csv_dataset(tmp_path, [header, "1,Red?,red,images/a.png,extra"])
    with pytest.raises(InputError, match=r"questions\.csv, record line 2: expected 4 comma-separated columns, found 5"):
        read_csv_questions(path, "c")
    csv_dataset(tmp_path, ["q,question,answers,image", "1,Red?,red,images/a.png"])
    with pytest.raises(InputError, match=r"questions\.csv, record line 1, field 'id': header lacks column 'id'"):
        read_csv_questions(path, "c", {"question_id": "id"})


def test_parquet_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    table = vqa_table([1, 2, 3], [0, 1, 2])
    pq.write_table(table.drop_columns(["question"]), path)
    with pytest.raises(InputError, match=r"t\.parquet, field 'question': missing column \(found: question_id, "):
        read_parquet_questions(path, None, "p")
    pq.write_table(table.set_column(0, "question_id", pa.array([1.0, 2.0, 3.0])), path)
    with pytest.raises(
        InputError, match=r"t\.parquet, record row 0, field 'question_id': expected a string or an integer, got float"
    ):
        read_parquet_questions(path, None, "p")
    images = table.column("image").to_pylist()
    images[2] = {"bytes": b"garbage", "path": "x.png"}
    pq.write_table(table.set_column(3, "image", pa.array(images, IMAGE_TYPE)), path)
    with pytest.raises(
        InputError, match=r"t\.parquet, record row 2 \(question_id 3\), field 'image': unreadable image"
    ):
        read_parquet_questions(path, tmp_path / "out", "p")
    assert not (tmp_path / "out").exists()  # a failed extraction writes nothing
    assert len(read_parquet_questions(path, tmp_path / "out", "p", only={"1", "2"})) == 3
    images[2] = {"bytes": None, "path": None}
    pq.write_table(table.set_column(3, "image", pa.array(images, IMAGE_TYPE)), path)
    with pytest.raises(InputError, match=r"record row 2 \(question_id 3\), field 'image': no image bytes or path"):
        read_parquet_questions(path, None, "p")
    pq.write_table(table.set_column(3, "image", pa.array([1, 2, 3])), path)
    with pytest.raises(InputError, match=r"t\.parquet, field 'image': expected an image struct"):
        read_parquet_questions(path, None, "p")
    with pytest.raises(InputError, match=r"nothing-\*\.parquet: no file matches this pattern"):
        read_parquet_questions(tmp_path / "nothing-*.parquet", None, "p")
    with pytest.raises(ValueError, match=r"dataset 'p': columns: unknown field\(s\) answer "):
        read_parquet_questions(path, None, "p", {"answer": "a"})


def test_hf_dataset_bad_input(tmp_path: Path) -> None:
    table = vqa_table([1, 2], [0, 1])
    folder = write_hf_dataset(tmp_path / "ds", [table.drop_columns(["answers"])])
    with pytest.raises(InputError, match=r"data-00000-of-00001\.arrow, field 'answers': missing column"):
        read_hf_dataset(folder, None, "h")
    images = table.column("image").to_pylist()
    images[1] = {"bytes": png(COLORS[0])[:40], "path": None}
    write_hf_dataset(folder, [table.set_column(3, "image", pa.array(images, IMAGE_TYPE))])
    with pytest.raises(
        InputError, match=r"data-00000-of-00001\.arrow, record row 1 \(question_id 2\), field 'image': unreadable image"
    ):
        read_hf_dataset(folder, tmp_path / "out", "h")
    (folder / "data-00000-of-00001.arrow").write_bytes(b"not arrow at all")
    with pytest.raises(InputError, match=r"data-00000-of-00001\.arrow: unreadable Arrow stream"):
        read_hf_dataset(folder, None, "h")
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"file": "x"}]}))
    with pytest.raises(InputError, match=r"state\.json, record _data_files\[0\], field 'filename': missing required"):
        read_hf_dataset(folder, None, "h")
    (folder / "state.json").unlink()
    (folder / "dataset_dict.json").write_text(json.dumps({"splits": ["validation"]}))
    with pytest.raises(InputError, match=r"ds: a DatasetDict folder: point `path` at the folder of one split"):
        read_hf_dataset(folder, None, "h")


# --- caching --------------------------------------------------------------------------------------


def test_cache_dataset_writes_each_generic_format(tmp_path: Path) -> None:
    parquet = tmp_path / "vqa.parquet"
    pq.write_table(vqa_table([1, 2, 3], [0, 1, 2]), parquet)
    specs = {
        "j": {"format": "jsonl", "jsonl": str(jsonl_dataset(tmp_path / "j"))},
        "c": {"format": "csv", "csv": str(csv_dataset(tmp_path / "c"))},
        "p": {"format": "parquet", "parquet": str(parquet), "limit": 2},
        "h": {
            "format": "hf_datasets",
            "path": str(write_hf_dataset(tmp_path / "hf", [vqa_table([4, 5], [0, 0], rename={"question": "q"})])),
            "columns": {"question": "q"},
        },
    }
    assert {spec["format"] for spec in specs.values()} <= set(FORMAT_READERS)
    counts = {}
    for name, spec in specs.items():
        out = tmp_path / "results/cache" / f"{name}.jsonl"
        images = tmp_path / "results/cache" / name / "images" if spec["format"] in ("parquet", "hf_datasets") else None
        counts[name] = cache_dataset(name, spec, out, images, specs)
        records = read_records(out)  # checks each image against its stamp
        assert [r.question_id for r in records] == [row["question_id"] for row in read_jsonl(out)]
        assert all(r.image_file and r.dataset == name and Path(r.image).is_file() for r in records)
        if images is not None:
            assert {Path(r.image).parent for r in records} == {images}
            assert len(list(images.iterdir())) == len({r.image for r in records})
    assert counts == {"j": 3, "c": 2, "p": 2, "h": 2}
    assert read_records(tmp_path / "results/cache/h.jsonl")[0].question == "Question 4?"
