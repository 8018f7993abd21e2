"""Foveated VLM data: the moving-shapes generator, validation, the seeded mix budget, frames,
tokens and batches."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import BitImageProcessor, PreTrainedTokenizerFast

from vlmflow.core.errors import InputError
from vlmflow.foveated.data import (
    FrameSample,
    FrameStore,
    collate,
    fixed_subset,
    read_samples,
    sample_budget,
    tokenize,
)
from vlmflow.synth import scenes
from vlmflow.synth.videos import corpus_lines, write_shape_videos
from vlmflow.zoo.tokenizer import train_bpe

SIZE, FRAMES, N = 56, 4, 24
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MIX = {"video": 0.55, "image": 0.30, "text": 0.15}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("videos")
    write_shape_videos(out, "train", N, seed=0, image_size=SIZE, frames=FRAMES)
    return out


@pytest.fixture(scope="module")
def samples(root: Path) -> list[FrameSample]:
    return read_samples(root / "train.jsonl")


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = PreTrainedTokenizerFast(
        tokenizer_object=train_bpe(corpus_lines(), 300, specials),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tok.chat_template = CHATML
    return tok


def processor() -> BitImageProcessor:
    return BitImageProcessor(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE})


def first(samples: list[FrameSample], kind: str) -> FrameSample:
    return next(s for s in samples if s.kind == kind)


# --- generator ---------------------------------------------------------------------------------


def shape_pixels(path: Path) -> np.ndarray:
    """A mask of the coloured shape pixels (neither background nor distractor grey)."""
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    grey = [(pixels == np.array(c)).all(-1) for c in (scenes.BACKGROUND, scenes.DISTRACTOR)]
    return ~(grey[0] | grey[1])


def centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def blobs(path: Path) -> dict[str, tuple[str, float]]:
    """colour -> (shape classified by how much of its bounding box it fills, centroid x)."""
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    out = {}
    for colour in ("red", "green", "blue", "yellow"):
        mask = (pixels == np.array(scenes.PALETTE[colour])).all(-1)
        if mask.any():
            ys, xs = np.nonzero(mask)
            fill = mask.sum() / ((np.ptp(xs) + 1) * (np.ptp(ys) + 1))
            shape = "square" if fill > 0.92 else "circle" if fill > 0.65 else "triangle"
            out[colour] = (shape, float(xs.mean()))
    return out


def written(folder: Path) -> dict[Path, bytes]:
    """The generator's output under `folder` (other tests add edited JSONLs beside it)."""
    paths = [folder / "train.jsonl", *(folder / "train").rglob("*.png")]
    return {p.relative_to(folder): p.read_bytes() for p in paths}


def test_generator_is_deterministic(root: Path, tmp_path: Path) -> None:
    write_shape_videos(tmp_path, "train", N, seed=0, image_size=SIZE, frames=FRAMES)
    again = written(tmp_path)
    assert again == written(root) and len(again) > N
    write_shape_videos(tmp_path / "other", "train", N, seed=1, image_size=SIZE, frames=FRAMES)
    assert (tmp_path / "other" / "train.jsonl").read_bytes() != (root / "train.jsonl").read_bytes()


def test_generator_kinds_and_records(samples: list[FrameSample], tmp_path: Path) -> None:
    assert len(samples) == N
    assert set(Counter(s.kind for s in samples)) == {"video", "image", "text"}
    assert {s.source for s in samples} == {"video_caption", "video_qa", "image_qa", "text"}
    for sample in samples:
        expected = {"video": FRAMES, "image": 1, "text": 0}[sample.kind]
        assert len(sample.frames) == expected and all(f.is_file() for f in sample.frames)
    for n in (8, 9, 13):  # every kind even in a small split
        write_shape_videos(tmp_path / str(n), "val", n, seed=5, image_size=32, frames=2)
        kinds = {s.kind for s in read_samples(tmp_path / str(n) / "val.jsonl")}
        assert kinds == {"video", "image", "text"}, n


def test_videos_move_in_the_stated_direction(samples: list[FrameSample]) -> None:
    checked = 0
    for sample in samples:
        caption = re.fullmatch(r"a (\w+) (\w+) moves (\w+)\.", sample.assistant)
        if caption:
            direction = caption.group(3)
        elif sample.user.startswith("Which way"):
            direction = sample.assistant
        else:
            continue
        (x0, y0), (x1, y1) = (centroid(shape_pixels(f)) for f in sample.frames[:: FRAMES - 1])
        dx, dy = x1 - x0, y1 - y0
        moved = {"left": -dx, "right": dx, "up": -dy, "down": dy}[direction]
        assert moved > SIZE / 3, (sample.id, direction, dx, dy)
        assert abs(dx if direction in ("up", "down") else dy) < 1, sample.id
        if caption:
            pixels = np.asarray(Image.open(sample.frames[0]).convert("RGB")).astype(int)
            assert (pixels == np.array(scenes.PALETTE[caption.group(1)])).all(-1).any()
        checked += 1
    assert checked >= 5


def test_image_answers_agree_with_pixels(samples: list[FrameSample]) -> None:
    sides = 0
    for sample in (s for s in samples if s.kind == "image"):
        found = blobs(sample.frames[0])
        assert len(found) == 1, sample.id  # one coloured shape among grey discs
        ((colour, (shape, x)),) = found.items()
        if m := re.fullmatch(r"What colour is the (\w+)\?", sample.user):
            assert (m.group(1), sample.assistant) == (shape, colour), sample.id
        elif m := re.fullmatch(r"What shape is the (\w+) one\?", sample.user):
            assert (m.group(1), sample.assistant) == (colour, shape), sample.id
        else:
            m = re.fullmatch(r"Is the (\w+) on the left or the right\?", sample.user)
            assert m and m.group(1) == shape, sample.user
            assert sample.assistant == ("left" if x < SIZE / 2 else "right"), sample.id
            sides += 1
    assert sides >= 1


def test_corpus_covers_every_text(samples: list[FrameSample]) -> None:
    lines = set(corpus_lines())
    for sample in samples:
        assert sample.user in lines and sample.assistant in lines, sample.id


# --- read_samples ------------------------------------------------------------------------------


def write_rows(root: Path, rows: list[dict[str, Any]]) -> Path:
    path = root / "edited.jsonl"  # beside train.jsonl, so relative frame paths still resolve
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rows_of(root: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (root / "train.jsonl").read_text().splitlines()]


def index_of(rows: list[dict[str, Any]], kind: str) -> int:
    return next(i for i, r in enumerate(rows) if r["kind"] == kind)


@pytest.mark.parametrize(
    "edit, record, words",
    [
        ("missing_frame", "video", "does not exist"),
        ("video_one_frame", "video", "at least 2 frames"),
        ("image_two_frames", "image", "exactly 1 frame"),
        ("text_with_frame", "text", "has no frames"),
        ("unknown_kind", "image", "unknown kind 'audio'"),
        ("empty_user", "text", "missing or empty"),
        ("duplicate_id", "image", "duplicate id"),
    ],
)
def test_read_samples_errors(root: Path, edit: str, record: str, words: str) -> None:
    rows = rows_of(root)
    i = index_of(rows, record)
    row = rows[i]
    if edit == "missing_frame":
        row["frames"][1] = "train/nowhere/1.png"
        words = f"{(root / 'train/nowhere/1.png').resolve()} does not exist"
    elif edit == "video_one_frame":
        row["frames"] = row["frames"][:1]
    elif edit == "image_two_frames":
        row["frames"] = row["frames"] * 2
    elif edit == "text_with_frame":
        row["frames"] = rows[index_of(rows, "image")]["frames"]
    elif edit == "unknown_kind":
        row["kind"] = "audio"
    elif edit == "empty_user":
        row["user"] = " "
    else:
        rows.append(dict(row))
    path = write_rows(root, rows)
    with pytest.raises(InputError) as err:
        read_samples(path)
    message = str(err.value)
    assert str(path) in message and f"record {row['id']}" in message and words in message


def test_read_samples_names_the_line_without_id(root: Path) -> None:
    rows = rows_of(root)
    del rows[2]["id"]
    with pytest.raises(InputError, match=r"record line 3, field 'id'"):
        read_samples(write_rows(root, rows))


def test_read_samples_accepts_absolute_frames(root: Path, tmp_path: Path) -> None:
    rows = rows_of(root)
    i = index_of(rows, "image")
    absolute = (root / rows[i]["frames"][0]).resolve()
    rows[i]["frames"] = [str(absolute)]
    path = tmp_path / "elsewhere.jsonl"
    path.write_text(json.dumps(rows[i]) + "\n")
    assert read_samples(path)[0].frames == (absolute,)


# --- sample_budget / fixed_subset --------------------------------------------------------------


def test_sample_budget_counts_and_determinism(samples: list[FrameSample]) -> None:
    chosen = sample_budget(samples, MIX, 40, seed=3)
    assert len(chosen) == 40
    assert Counter(samples[i].kind for i in chosen) == {"video": 22, "image": 12, "text": 6}
    assert chosen == sample_budget(samples, MIX, 40, seed=3)
    assert chosen != sample_budget(samples, MIX, 40, seed=4)
    other = sample_budget(samples, {"video": 0.5, "image": 0.5}, 40, seed=3)
    assert Counter(samples[i].kind for i in other) == {"video": 20, "image": 20}
    # each kind cycles through its pool: the text pool (4) is used evenly, no index repeats early
    texts = Counter(i for i in chosen if samples[i].kind == "text")
    assert len(texts) == 4 and sorted(texts.values()) == [1, 1, 2, 2]


def test_sample_budget_largest_remainder(samples: list[FrameSample]) -> None:
    chosen = sample_budget(samples, {"video": 1, "image": 1, "text": 1}, 10, seed=0)
    assert sorted(Counter(samples[i].kind for i in chosen).values()) == [3, 3, 4]
    assert sample_budget(samples, MIX, 0, seed=0) == []


def test_sample_budget_same_in_another_process(root: Path, samples: list[FrameSample]) -> None:
    code = (
        "import sys; from vlmflow.foveated.data import read_samples, sample_budget; "
        f"print(sample_budget(read_samples(sys.argv[1]), {MIX!r}, 40, seed=3))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(root / "train.jsonl")],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    assert json.loads(out.stdout) == sample_budget(samples, MIX, 40, seed=3)


def test_sample_budget_errors(samples: list[FrameSample]) -> None:
    no_text = [s for s in samples if s.kind != "text"]
    with pytest.raises(ValueError, match=r"'text'.*\['video', 'image'\]"):
        sample_budget(no_text, MIX, 10, seed=0)
    assert len(sample_budget(no_text, {"video": 1, "image": 1, "text": 0}, 10, seed=0)) == 10
    with pytest.raises(ValueError, match=">= 0"):
        sample_budget(samples, {"video": -1, "image": 2}, 10, seed=0)
    with pytest.raises(ValueError, match="sum"):
        sample_budget(samples, {"video": 0}, 10, seed=0)
    with pytest.raises(ValueError, match="unknown kinds"):
        sample_budget(samples, {"audio": 1}, 10, seed=0)


def test_fixed_subset() -> None:
    subset = fixed_subset(100, 10, seed=1)
    assert len(subset) == 10 == len(set(subset)) and subset == sorted(subset)
    assert subset == fixed_subset(100, 10, seed=1) and subset != fixed_subset(100, 10, seed=2)
    assert fixed_subset(5, None, seed=1) == fixed_subset(5, 9, seed=1) == [0, 1, 2, 3, 4]


# --- FrameStore ---------------------------------------------------------------------------------


class Counting:
    """Wraps an image processor, counting calls and images; forwards its config attributes."""

    def __init__(self, inner: BitImageProcessor) -> None:
        self.inner, self.calls, self.images = inner, 0, 0

    def __call__(self, images: list[Image.Image], **kwargs: Any) -> Any:
        self.calls += 1
        self.images += len(images)
        return self.inner(images=images, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_frame_store_shapes_and_replication(samples: list[FrameSample]) -> None:
    store = FrameStore(processor(), replicate_image_frames=3)
    text = store(first(samples, "text"))  # a text-only first call still knows H, W
    assert text.shape == (0, 3, SIZE, SIZE) and text.dtype == torch.float32
    video = store(first(samples, "video"))
    assert video.shape == (FRAMES, 3, SIZE, SIZE) and video.dtype == torch.float32
    assert not torch.equal(video[0], video[-1])
    image = store(first(samples, "image"))
    assert image.shape == (3, 3, SIZE, SIZE)
    assert all(torch.equal(image[0], frame) for frame in image)
    assert FrameStore(processor())(first(samples, "image")).shape == (1, 3, SIZE, SIZE)


def test_frame_store_processes_each_frame_once(samples: list[FrameSample]) -> None:
    counting = Counting(processor())
    store = FrameStore(counting, replicate_image_frames=2)
    video = first(samples, "video")
    once = store(video)
    assert counting.calls == 1 and counting.images == FRAMES  # one batched call per sample
    assert torch.equal(store(video), once) and counting.calls == 1
    for sample in samples:
        store(sample)
    assert counting.images == sum(len(s.frames) for s in samples)


def test_frame_store_memory_is_bounded(samples: list[FrameSample]) -> None:
    """With room for one video, a second video pushes the first out: it is decoded again."""
    counting = Counting(processor())
    store = FrameStore(counting, cache_bytes=FRAMES * 3 * SIZE * SIZE * 4)
    videos = [s for s in samples if s.kind == "video"][:2]
    first_pixels = store(videos[0])
    store(videos[1])
    assert torch.equal(store(videos[0]), first_pixels) and counting.calls == 3
    assert store._cached_bytes <= store.cache_bytes


def test_frame_store_undecodable_frame(samples: list[FrameSample], tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    sample = FrameSample("x7", "image", "image_qa", (broken,), "q", "a")
    with pytest.raises(InputError, match=rf"{re.escape(str(broken))}, record x7"):
        FrameStore(processor())(sample)


# --- tokenize / collate ------------------------------------------------------------------------


def test_tokenize_answer_only(tokenizer: PreTrainedTokenizerFast, samples) -> None:
    sample = first(samples, "video")
    ids, mask = tokenize(tokenizer, sample, "answer_only")
    assert len(ids) == len(mask) and set(mask) == {0, 1}
    start = mask.index(1)
    assert all(mask[start:]) and not any(mask[:start])
    assert tokenizer.decode([i for i, m in zip(ids, mask) if m]) == sample.assistant + "<|im_end|>"
    assert tokenizer.decode(ids[:start]) == (f"<|im_start|>user\n{sample.user}<|im_end|>\n<|im_start|>assistant\n")
    all_ids, all_mask = tokenize(tokenizer, sample, "all_tokens")
    assert all_ids == ids and all_mask == [1] * len(ids)
    with pytest.raises(ValueError, match="answer_only.*all_tokens"):
        tokenize(tokenizer, sample, "prompt_only")


def test_tokenize_without_chat_template(tokenizer: PreTrainedTokenizerFast, samples) -> None:
    plain = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, eos_token="<|im_end|>")
    sample = first(samples, "text")
    ids, mask = tokenize(plain, sample, "answer_only")
    assert plain.decode(ids[: mask.index(1)]) == f"User: {sample.user}\nAssistant: "


def test_tokenize_truncates_the_prompt(tokenizer: PreTrainedTokenizerFast, samples) -> None:
    sample = first(samples, "video")
    full, full_mask = tokenize(tokenizer, sample, "answer_only")
    n_answer = sum(full_mask)
    ids, mask = tokenize(tokenizer, sample, "answer_only", max_length=n_answer + 3)
    assert ids == full[-(n_answer + 3) :] and mask == [0, 0, 0] + [1] * n_answer
    ids, mask = tokenize(tokenizer, sample, "answer_only", max_length=n_answer)
    assert ids == full[-n_answer:] and all(mask)
    assert tokenize(tokenizer, sample, "answer_only", max_length=1000) == (full, full_mask)
    with pytest.raises(ValueError, match=sample.id):
        tokenize(tokenizer, sample, "answer_only", max_length=n_answer - 1)


def test_collate_mixed_batch(tokenizer: PreTrainedTokenizerFast, samples) -> None:
    store = FrameStore(processor(), replicate_image_frames=2)
    batch_samples = [first(samples, k) for k in ("video", "image", "text")]
    items = [(store(s), *tokenize(tokenizer, s, "answer_only")) for s in batch_samples]
    batch = collate(items, tokenizer.pad_token_id)
    lengths = [len(ids) for _, ids, _ in items]
    assert batch["pixel_values"].shape == (3, FRAMES, 3, SIZE, SIZE)
    assert batch["pixel_values"].dtype == torch.float32
    assert batch["frame_mask"].tolist() == [[True] * 4, [True, True, False, False], [False] * 4]
    assert torch.equal(batch["pixel_values"][0], items[0][0])
    assert torch.equal(batch["pixel_values"][1, :2], items[1][0])
    assert not batch["pixel_values"][1, 2:].any() and not batch["pixel_values"][2].any()
    assert batch["input_ids"].shape == (3, max(lengths)) and batch["input_ids"].dtype == torch.long
    assert batch["loss_mask"].dtype == torch.float32
    assert batch["attention_mask"].dtype == torch.long
    for row, (_, ids, mask) in enumerate(items):
        n = len(ids)
        assert batch["input_ids"][row, :n].tolist() == ids
        assert (batch["input_ids"][row, n:] == tokenizer.pad_token_id).all()
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (max(lengths) - n)
        assert batch["loss_mask"][row].tolist() == mask + [0] * (max(lengths) - n)


def test_collate_all_text(tokenizer: PreTrainedTokenizerFast, samples) -> None:
    store = FrameStore(processor())
    texts = [s for s in samples if s.kind == "text"][:2]
    batch = collate([(store(s), *tokenize(tokenizer, s, "all_tokens")) for s in texts], 0)
    assert batch["pixel_values"].shape == (2, 0, 3, SIZE, SIZE)
    assert batch["frame_mask"].shape == (2, 0)
    assert batch["attention_mask"].sum() == batch["loss_mask"].sum()
