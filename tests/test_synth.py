"""Synthetic raw-data generators: deterministic, upstream shapes, answerable from pixels."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from vlmflow.synth import kvasir, scenes, swap_pairs, textvqa, vqav2
from vlmflow.synth.corpus import CHAT_SCAFFOLD, SCAFFOLD_WEIGHT, corpus_lines
from vlmflow.synth.kvasir import write_kvasir
from vlmflow.synth.swap_pairs import write_swap_pairs
from vlmflow.synth.textvqa import write_textvqa
from vlmflow.synth.vqav2 import write_vqav2

SIZE = 64
N = 6


def generate(root: Path, seed: int, split: str = "val", size: int = SIZE, n: int = N) -> Path:
    write_vqav2(root / "vqav2", split, n, seed, image_size=size)
    write_textvqa(root / "textvqa", split, n, seed, image_size=size)
    write_kvasir(root / "kvasir.parquet", "val", n, seed, image_size=size)
    write_swap_pairs(root / "swap.tsv", "val", 2 * n, seed, image_size=size)
    return root


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("synth"), seed=0)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Full-size images for the pixel checks."""
    return generate(tmp_path_factory.mktemp("synth224"), seed=3, size=224, n=8)


def tsv_rows(path: Path) -> list[dict[str, str]]:
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


# --- determinism -------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes(data: Path, tmp_path: Path) -> None:
    again = files(generate(tmp_path, seed=0))
    first = files(data)
    assert sorted(again) == sorted(first)
    assert len(first) == 5 + 2 * N  # 3 JSON files, 2 x N images, parquet, tsv
    for name, content in first.items():
        assert again[name] == content, name


def test_different_seed_differs(data: Path, tmp_path: Path) -> None:
    other = files(generate(tmp_path, seed=1))
    first = files(data)
    for name in (
        "kvasir.parquet",
        "swap.tsv",
        "textvqa/TextVQA_0.5.1_val.json",
        "vqav2/v2_mscoco_val2014_annotations.json",
    ):
        assert other[name] != first[name], name


def test_train_and_val_differ(tmp_path: Path) -> None:
    write_vqav2(tmp_path, "train", 4, 0, image_size=SIZE)
    write_vqav2(tmp_path, "val", 4, 0, image_size=SIZE)
    write_textvqa(tmp_path, "train", 4, 0, image_size=SIZE)
    write_textvqa(tmp_path, "val", 4, 0, image_size=SIZE)
    ids = {
        split: {
            q["image_id"]
            for q in json.loads((tmp_path / f"v2_OpenEnded_mscoco_{split}2014_questions.json").read_text())["questions"]
        }
        for split in ("train", "val")
    }
    assert ids["train"] != ids["val"]
    texts = {s: json.loads((tmp_path / f"TextVQA_0.5.1_{s}.json").read_text()) for s in ("train", "val")}
    assert {d["image_id"] for d in texts["train"]["data"]} != {d["image_id"] for d in texts["val"]["data"]}
    assert {d["set_name"] for d in texts["val"]["data"]} == {"val"}
    for split in ("train", "val"):
        write_kvasir(tmp_path / f"{split}.parquet", split, 4, 0, image_size=SIZE)
        write_swap_pairs(tmp_path / f"{split}.tsv", split, 4, 0, image_size=SIZE)
    assert (tmp_path / "train.parquet").read_bytes() != (tmp_path / "val.parquet").read_bytes()
    pair_ids = {
        s: {line.split("\t")[1] for line in (tmp_path / f"{s}.tsv").read_text().splitlines()[1:]}
        for s in ("train", "val")
    }
    assert not pair_ids["train"] & pair_ids["val"], "swap-pair question ids must not repeat across splits"


def test_unknown_split_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        write_vqav2(tmp_path, "test", 1, 0)


# --- upstream shapes ---------------------------------------------------------------------------


def _normalise(answer: str) -> str:
    """Enough of the official VQA normalisation for the variants the generator produces."""
    words = re.sub(r"\.(?!\d)", "", answer).lower().split()
    numbers = {w: str(i) for i, w in enumerate(scenes.NUMBER_WORDS)} | {"none": "0"}
    return " ".join(numbers.get(w, w) for w in words if w not in ("a", "an", "the"))


def test_vqav2_shape(data: Path) -> None:
    questions = json.loads((data / "vqav2/v2_OpenEnded_mscoco_val2014_questions.json").read_text())
    annotations = json.loads((data / "vqav2/v2_mscoco_val2014_annotations.json").read_text())
    assert list(questions) == [
        "info",
        "task_type",
        "data_type",
        "license",
        "data_subtype",
        "questions",
    ]
    assert questions["data_subtype"] == "val2014" and questions["task_type"] == "Open-Ended"
    assert list(annotations) == ["info", "license", "data_subtype", "data_type", "annotations"]
    qs, anns = questions["questions"], annotations["annotations"]
    assert len(qs) == len(anns) == vqav2.QUESTIONS_PER_IMAGE * N
    assert [q["question_id"] for q in qs] == [a["question_id"] for a in anns]
    for q, a in zip(qs, anns, strict=True):
        assert set(q) == {"image_id", "question", "question_id"}
        assert q["question_id"] // 1000 == q["image_id"]
        assert q["question_id"] % 1000 in range(vqav2.QUESTIONS_PER_IMAGE)
        assert (data / f"vqav2/val2014/COCO_val2014_{q['image_id']:012d}.jpg").is_file()
        assert a["answer_type"] in ("yes/no", "number", "other")
        assert [x["answer_id"] for x in a["answers"]] == list(range(1, 11))
        assert {x["answer_confidence"] for x in a["answers"]} <= {"yes", "maybe", "no"}
        normalised = Counter(_normalise(x["answer"]) for x in a["answers"])
        assert normalised.most_common(1)[0] == (
            a["multiple_choice_answer"],
            normalised.most_common(1)[0][1],
        )
        assert normalised[a["multiple_choice_answer"]] >= 9
        assert q["question"].lower().startswith(a["question_type"])


def test_vqav2_yes_no_balanced(tmp_path: Path) -> None:
    write_vqav2(tmp_path, "train", 40, 5, image_size=32)
    anns = json.loads((tmp_path / "v2_mscoco_train2014_annotations.json").read_text())["annotations"]
    counts = Counter(a["multiple_choice_answer"] for a in anns if a["answer_type"] == "yes/no")
    assert counts["yes"] == counts["no"] == 40, "one yes/no minimal pair per image"
    assert len({a["answer_type"] for a in anns}) == 3
    by_image: dict[int, list[str]] = {}
    for a in anns:
        if a["answer_type"] == "yes/no":
            by_image.setdefault(a["image_id"], []).append(a["multiple_choice_answer"])
    assert all(sorted(answers) == ["no", "yes"] for answers in by_image.values())
    assert Counter(a["question_type"] for a in anns)["how many"] == 40, "a count question per image"


def test_vqav2_several_scenes_ask_one_object_by_name(tmp_path: Path) -> None:
    """`several` scenes: 2-3 objects of different shapes and colours; the colour / shape questions
    name one object present, and the yes/no pair's "no" joins two present objects' attributes."""
    write_vqav2(tmp_path, "val", 12, 2, image_size=224, scene="several")
    questions = json.loads((tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())["questions"]
    anns = json.loads((tmp_path / "v2_mscoco_val2014_annotations.json").read_text())["annotations"]
    assert len(anns) == 12 * vqav2.QUESTIONS_PER_IMAGE
    by_image: dict[int, list[tuple[str, dict]]] = {}
    for q, a in zip(questions, anns, strict=True):
        by_image.setdefault(q["image_id"], []).append((q["question"], a))
    for image_id, asked in by_image.items():
        image = Image.open(tmp_path / f"val2014/COCO_val2014_{image_id:012d}.jpg")
        present = [c for c in scenes.COLOURS if colour_mask(image, c).sum() > 0.02 * 224 * 224 / 9]
        assert 2 <= len(present) <= len(scenes.SHAPES)
        assert [a["question_type"] for _, a in asked] == ["what color is the", "what", "is there a", "is there a"]
        (_, colour), (shape_question, shape), *pair = [(text, a["multiple_choice_answer"]) for text, a in asked]
        assert colour in present
        assert shape_question.split()[4] in present and shape in scenes.SHAPES
        assert sorted(answer for _, answer in pair) == ["no", "yes"]
        asked_colours = {text.split()[3] for text, _ in pair}
        assert len(asked_colours) == 1 and asked_colours <= set(present), "the pair names one present colour"
        asked_shapes = {text.split()[4].rstrip("?") for text, _ in pair}
        assert len(asked_shapes) == 2, "the pair differs only in the shape asked about"


def test_vqav2_scene_kinds_have_their_own_streams(tmp_path: Path) -> None:
    """`one_kind` is the default, byte for byte; `several` draws other scenes; others are refused."""
    write_vqav2(tmp_path / "one", "val", 3, 0, image_size=32)
    write_vqav2(tmp_path / "default", "val", 3, 0, image_size=32, scene="one_kind")
    write_vqav2(tmp_path / "several", "val", 3, 0, image_size=32, scene="several")
    assert files(tmp_path / "one") == files(tmp_path / "default")
    assert files(tmp_path / "one") != files(tmp_path / "several")
    with pytest.raises(ValueError, match="scene must be one of"):
        write_vqav2(tmp_path / "bad", "val", 3, 0, scene="crowd")


def test_textvqa_shape(data: Path) -> None:
    top = json.loads((data / "textvqa/TextVQA_0.5.1_val.json").read_text())
    assert {k: top[k] for k in ("dataset_type", "dataset_name", "dataset_version")} == {
        "dataset_type": "val",
        "dataset_name": "textvqa",
        "dataset_version": "0.5.1",
    }
    keys = {
        "question",
        "image_id",
        "image_classes",
        "flickr_original_url",
        "flickr_300k_url",
        "image_width",
        "image_height",
        "answers",
        "question_tokens",
        "question_id",
        "set_name",
    }
    assert len(top["data"]) == 2 * N
    for entry in top["data"]:
        assert set(entry) == keys
        assert re.fullmatch(r"[0-9a-f]{16}", entry["image_id"])
        assert len(entry["answers"]) == 10 and all(isinstance(a, str) for a in entry["answers"])
        with Image.open(data / f"textvqa/train_images/{entry['image_id']}.jpg") as im:
            assert im.size == (entry["image_width"], entry["image_height"]) == (SIZE, SIZE)
    assert len({e["question_id"] for e in top["data"]}) == 2 * N


def test_kvasir_shape(data: Path) -> None:
    table = pq.read_table(data / "kvasir.parquet")
    assert table.schema.names == ["image", "source", "question", "answer", "img_id"]
    assert table.schema.field("image").type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    rows = table.to_pylist()
    assert len(rows) == N * kvasir.QUESTIONS_PER_IMAGE
    assert len({r["img_id"] for r in rows}) == N
    for row in rows:
        assert row["question"] in kvasir.QUESTIONS
        assert row["answer"] == row["answer"].lower() and row["answer"]
        assert row["source"] in ("hyperkvasir", "kvasir-instrument")
        assert re.fullmatch(r"cl[a-z0-9]{23}", row["img_id"])
        assert row["image"]["path"] == f"{row['img_id']}.jpg"
        Image.open(io.BytesIO(row["image"]["bytes"])).verify()
    assert "How many instrumnets are in the image?" in kvasir.QUESTIONS


def test_kvasir_answer_conventions(tmp_path: Path) -> None:
    write_kvasir(tmp_path / "k.parquet", "val", 30, 2, image_size=32)
    rows = pq.read_table(tmp_path / "k.parquet", columns=["question", "answer", "img_id"]).to_pylist()
    by_image: dict[str, dict[str, str]] = {}
    for row in rows:
        by_image.setdefault(row["img_id"], {})[row["question"]] = row["answer"]
    for qa in by_image.values():
        no_polyp = qa.get(kvasir.Q_N_POLYPS) == "0" or qa.get(kvasir.Q_ABNORMALITY) == "no"
        if no_polyp:
            assert qa.get(kvasir.Q_SIZE, "not relevant") == "not relevant"
            assert qa.get(kvasir.Q_ABNORMALITY_COLOUR, "none") == "none"
        if kvasir.Q_SIZE in qa and qa[kvasir.Q_SIZE] != "not relevant":
            assert set(qa[kvasir.Q_SIZE].split("; ")) <= set(kvasir.SIZES)
        for q in (kvasir.Q_ABNORMALITY_WHERE, kvasir.Q_INSTRUMENT_WHERE, kvasir.Q_LANDMARK_WHERE):
            if q in qa and qa[q] != "none":
                cells = qa[q].split("; ")
                assert cells == sorted(cells) and set(cells) <= set(scenes.GRID_NAMES)


def test_swap_pairs_shape(data: Path) -> None:
    with open(data / "swap.tsv", encoding="utf-8") as handle:
        assert handle.readline().rstrip("\n").split("\t") == list(swap_pairs.COLUMNS)
    rows = tsv_rows(data / "swap.tsv")
    assert len(rows) == 2 * N
    assert Counter(r["category"] for r in rows) == {c: 2 for c in swap_pairs.CATEGORIES}
    for row in rows:
        assert row["original_answer"] == row["category"]
        assert row["swapped_answer"] == swap_pairs.OPPOSITE[row["category"]]
        assert row["group"] == swap_pairs.GROUP_OF[row["category"]]
        subject, reference = re.match(r"Is the (\w+ \w+) .* the (\w+ \w+)\?", row["original_question"]).groups()
        assert row["swapped_question"] == row["original_question"].replace(subject, "@").replace(
            reference, subject
        ).replace("@", reference)
        Image.open(io.BytesIO(base64.b64decode(row["image_base64"]))).verify()


# --- answerable from the pixels ----------------------------------------------------------------


def colour_mask(image: Image.Image, name: str, tol: int = 45) -> np.ndarray:
    pixels = np.asarray(image.convert("RGB"), dtype=int)
    return np.abs(pixels - np.array(scenes.PALETTE[name])).max(axis=2) < tol


def test_textvqa_sign_colour_is_dominant_colour(big: Path) -> None:
    top = json.loads((big / "textvqa/TextVQA_0.5.1_val.json").read_text())
    for entry in top["data"]:
        if entry["question"] != textvqa.COLOUR_QUESTION:
            continue
        image = Image.open(big / f"textvqa/train_images/{entry['image_id']}.jpg")
        counts = {c: colour_mask(image, c).sum() for c in scenes.COLOURS}
        answer = Counter(entry["answers"]).most_common(1)[0][0]
        assert max(counts, key=counts.get) == _normalise(answer)


def test_vqav2_colour_and_count_visible(big: Path) -> None:
    questions = json.loads((big / "vqav2/v2_OpenEnded_mscoco_val2014_questions.json").read_text())
    anns = json.loads((big / "vqav2/v2_mscoco_val2014_annotations.json").read_text())
    for q, a in zip(questions["questions"], anns["annotations"], strict=True):
        image = Image.open(big / f"vqav2/val2014/COCO_val2014_{q['image_id']:012d}.jpg")
        if a["question_type"] == "what color is the":
            assert colour_mask(image, a["multiple_choice_answer"]).sum() > 0.02 * 224 * 224 / 9
        if a["question_type"] == "is there a":
            colour = q["question"].split()[3]
            if a["multiple_choice_answer"] == "yes":
                assert colour_mask(image, colour).sum() > 100


def test_swap_pair_positions_match_answers(big: Path) -> None:
    for row in tsv_rows(big / "swap.tsv"):
        image = Image.open(io.BytesIO(base64.b64decode(row["image_base64"])))
        subject, reference = re.match(r"Is the (\w+) \w+ .* the (\w+) \w+\?", row["original_question"]).groups()
        ys_s, xs_s = np.nonzero(colour_mask(image, subject))
        ys_r, xs_r = np.nonzero(colour_mask(image, reference))
        category = row["category"]
        if category in ("left", "right"):
            assert (xs_s.mean() < xs_r.mean()) == (category == "left")
        elif category in ("above", "under"):
            assert (ys_s.mean() < ys_r.mean()) == (category == "above")
        else:  # far: smaller and higher
            assert (len(xs_s) < len(xs_r)) == (category == "far")
            assert (ys_s.mean() < ys_r.mean()) == (category == "far")


# --- corpus ------------------------------------------------------------------------------------


def test_corpus_covers_generated_text(data: Path) -> None:
    lines = corpus_lines()
    data_lines = lines[: -len(CHAT_SCAFFOLD) * SCAFFOLD_WEIGHT]
    assert lines == corpus_lines() and len(data_lines) == len(set(data_lines))
    text = set(lines)
    questions = json.loads((data / "vqav2/v2_OpenEnded_mscoco_val2014_questions.json").read_text())
    assert {q["question"] for q in questions["questions"]} <= text
    anns = json.loads((data / "vqav2/v2_mscoco_val2014_annotations.json").read_text())
    assert {x["answer"] for a in anns["annotations"] for x in a["answers"]} <= text
    top = json.loads((data / "textvqa/TextVQA_0.5.1_val.json").read_text())
    assert {e["question"] for e in top["data"]} | {x for e in top["data"] for x in e["answers"]} <= text
    rows = pq.read_table(data / "kvasir.parquet", columns=["question"]).column("question").to_pylist()
    assert set(rows) <= text
    swap = tsv_rows(data / "swap.tsv")
    assert {r["original_question"] for r in swap} | {r["swapped_question"] for r in swap} <= text
    words = {w for line in lines for w in re.split(r"[\s;?./]+", line) if w}
    kv_answers = pq.read_table(data / "kvasir.parquet", columns=["answer"]).column("answer").to_pylist()
    assert {w for a in kv_answers for w in re.split(r"[\s;]+", a) if w} <= words


def test_tokenizer_trained_on_the_corpus_keeps_prompts_short() -> None:
    """The chat scaffold is in the corpus: the default prompt costs words, not single bytes."""
    from vlmflow.core.settings import DEFAULT_PROMPT
    from vlmflow.zoo.families.qwen2_vl import QWEN2_VL_SPECIAL_TOKENS
    from vlmflow.zoo.tokenizer import train_bpe

    tokenizer = train_bpe(corpus_lines(), 512, QWEN2_VL_SPECIAL_TOKENS)
    instruction = DEFAULT_PROMPT.format(question="")
    scaffold = f"system\nYou are a helpful assistant.\nuser\n{instruction}\nassistant\n"
    # about one token per word (25); without the scaffold in the corpus it was about 70
    assert len(tokenizer.encode(scaffold).ids) <= 30, tokenizer.encode(scaffold).tokens
