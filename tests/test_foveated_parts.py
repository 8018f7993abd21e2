"""The foveated parts' pretraining: the multi-token VLM's trained encoder and language model are
shipped as two folders that compute what they computed inside it, and their first steps are
reproducible."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from test_foveated_model import SETTINGS, SPEC, a_batch

from vlmflow.foveated.data import read_samples
from vlmflow.foveated.model import from_parts, load_frame_lm
from vlmflow.foveated.parts import corpus_digest, evaluation, export_parts, first_steps
from vlmflow.foveated.trainer import train_foveated
from vlmflow.synth.videos import corpus_lines, write_shape_videos
from vlmflow.zoo.foveated import build_foveated_parts

PRETRAIN = replace(SETTINGS, architecture="multi_token", budget=8, eval_every=2)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """A random build, trained as the multi-token baseline for two steps."""
    root = tmp_path_factory.mktemp("pretrain_foveated")
    build_foveated_parts(SPEC, corpus_lines(), root / "random")
    write_shape_videos(root / "data", "train", 20, seed=1, image_size=32, frames=3)
    write_shape_videos(root / "data", "val", 10, seed=0, image_size=32, frames=3)
    outputs = {
        "model_dir": root / "model",
        "log": root / "log.jsonl",
        "evals": root / "evals.jsonl",
        "attention": root / "attention",
    }
    parts = {"vision": str(root / "random" / "vision"), "language": str(root / "random" / "language")}
    train, val = read_samples(root / "data" / "train.jsonl"), read_samples(root / "data" / "val.jsonl")
    train_foveated(parts, train, val, PRETRAIN, {"test": 1}, root / "state", outputs, device="cpu")
    return root


def test_the_exported_parts_compute_what_they_computed_inside_the_trained_model(pretrained, tmp_path):
    export_parts(pretrained / "model", tmp_path, "float32")
    trained, tokenizer, processor = load_frame_lm(pretrained / "model")
    settings = {"architecture": "multi_token", "grid": PRETRAIN.grid}
    rebuilt, _, _ = from_parts(tmp_path / "vision", tmp_path / "language", settings)
    rebuilt.connector.load_state_dict(trained.connector.state_dict())  # the one part not shipped
    random, _, _ = from_parts(pretrained / "random" / "vision", pretrained / "random" / "language", settings)
    random.connector.load_state_dict(trained.connector.state_dict())
    batch = a_batch(pretrained, (trained, tokenizer, processor))
    with torch.no_grad():
        expected, got, untrained = (m.eval()(**batch).token_losses for m in (trained, rebuilt, random))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert not torch.equal(untrained, expected)  # the training moved the parts themselves


def test_half_precision_parts_are_the_trained_weights_rounded(pretrained, tmp_path):
    export_parts(pretrained / "model", tmp_path, "float16")
    trained, _, _ = load_frame_lm(pretrained / "model")
    for part in ("vision", "language"):
        config = json.loads((tmp_path / part / "config.json").read_text())
        assert config["dtype"] == "float16", part
    shipped, _, _ = from_parts(tmp_path / "vision", tmp_path / "language", {"architecture": "multi_token"})
    for name, tensor in trained.state_dict().items():
        if not name.startswith("connector."):
            assert torch.equal(shipped.state_dict()[name], tensor.half()), name


def test_first_steps_are_the_runs_own_and_repeat(pretrained):
    train = read_samples(pretrained / "data" / "train.jsonl")
    val = read_samples(pretrained / "data" / "val.jsonl")
    parts = {"vision": pretrained / "random" / "vision", "language": pretrained / "random" / "language"}
    torch.set_num_threads(1)
    once, again = (first_steps(parts, train, val, PRETRAIN, steps=2) for _ in range(2))
    assert [row["step"] for row in once] == [0, 1, 2]
    assert once == again
    assert len({row["weights_sha256"] for row in once}) == 3
    logged = [json.loads(line) for line in (pretrained / "log.jsonl").read_text().splitlines()]
    assert [row["loss"] for row in once[1:]] == pytest.approx([row["loss"] for row in logged[:2]], rel=1e-5)


def test_the_corpus_digest_covers_the_frames(pretrained, tmp_path):
    jsonl = pretrained / "data" / "train.jsonl"
    before = corpus_digest(jsonl)
    assert corpus_digest(jsonl) == before
    frame = next(p for p in (pretrained / "data" / "train").rglob("*.png"))
    content = frame.read_bytes()
    try:
        frame.write_bytes(content + b"\0")
        assert corpus_digest(jsonl) != before
    finally:
        frame.write_bytes(content)


def test_an_evaluation_row_becomes_the_zoo_s_per_kind_accuracy():
    row = {"step": 4, "samples": 16, "val_accuracy": 0.5, "val_accuracy/video": 0.25, "val_accuracy/text": 1.0}
    assert evaluation(row, 6) == {
        "shapes_val": {
            "metric": "exact_match",
            "n": 6,
            "accuracy": 0.5,
            "per_question_type": {"video": 0.25, "text": 1.0},
        }
    }
