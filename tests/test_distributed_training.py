"""Data-parallel training (gpus: N) on the CPU with gloo and 2 processes: the same curve and weights
as one process with the same global batch, a kill and resume under 2 processes, the foveated
trainer alike, and clear errors."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import make_records
from safetensors.torch import load_file

from vlmflow.core.distributed import INJECT_KILL, DataParallelFailure
from vlmflow.core.gpu_memory import INJECT_OOM_ABOVE
from vlmflow.core.settings import FoveatedSettings, GenerationSettings, TrainSettings
from vlmflow.finetune.trainer import train_stage
from vlmflow.foveated.data import read_samples
from vlmflow.foveated.trainer import train_foveated
from vlmflow.synth.videos import corpus_lines, write_shape_videos
from vlmflow.zoo.foveated import build_foveated_parts

# 4 micro-batches of 2 per step: rank 0 computes micro-batches 0 and 2, rank 1 computes 1 and 3.
# No dropout: with it, the ranks draw other masks than one process does.
LORA = TrainSettings(steps=4, batch_size=2, grad_accum=4, lr=1e-2, warmup_steps=1, checkpoint_every=2,
                     lora_r=4, lora_alpha=8, lora_dropout=0.0)  # fmt: skip
FOVEATED_SPEC = {
    "seed": 0,
    "vocab_size": 200,
    "image_size": 28,
    "vision": {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "mlp_ratio": 2, "initializer_range": 0.1},
    "text": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "num_key_value_heads": 1, "tie_word_embeddings": True},
}  # fmt: skip
# 3 steps of 4 samples (2 per rank), the last of 1 (rank 1 has none); the coarse loss trains too.
# The LM stays frozen: most of this tiny LM's gradients are about AdamW's eps, where rounding decides
# a step (see ACROSS_PROCESS_COUNTS); the rest of the model agrees to a tenth of a step.
FOVEATED = FoveatedSettings(budget=9, batch_size=4, eval_every=2, val_samples=4, attention_samples=1,
                            checkpoint_every=1, lr_connector=1e-2, lr_vision=1e-3, lambda_coarse=0.5,
                            freeze=("language",))  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def deterministic():
    """Deterministic kernels here and (launch passes the setting on) in every rank."""
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return make_records(tmp_path_factory.mktemp("images"), 8)


def stage(model: Path, records, root: Path, gpus: int, until: int = 4, settings: TrainSettings = LORA):
    return train_stage(
        model,
        records,
        "digest",
        settings,
        GenerationSettings(),
        until=until,
        out_dir=root / "out",
        run_dir=root / "run",
        device="cpu",
        gpus=gpus,
    )


def log_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_same_curve(a: list[dict], b: list[dict]) -> None:
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for key in ("loss", "grad_norm"):
        assert [r[key] for r in a] == pytest.approx([r[key] for r in b], abs=1e-5), key


def assert_same_weights(a: Path, b: Path, atol: float = 1e-6) -> None:
    wa, wb = load_file(a), load_file(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=0, atol=atol, msg=name)


@pytest.fixture(scope="module")
def single(tiny_checkpoints, records, tmp_path_factory) -> Path:
    """The one-process run the data-parallel runs are compared with."""
    root = tmp_path_factory.mktemp("single")
    stage(tiny_checkpoints["qwen2_vl"], records, root, gpus=1)
    return root


@pytest.fixture(scope="module")
def double(tiny_checkpoints, records, tmp_path_factory) -> tuple[Path, list[dict]]:
    """The same run in 2 processes, uninterrupted, and the rows it returned."""
    root = tmp_path_factory.mktemp("double")
    return root, stage(tiny_checkpoints["qwen2_vl"], records, root, gpus=2)


# AdamW divides each gradient element by its running RMS plus eps (1e-8): an element whose gradient
# is about eps takes a step that rounding moves, and 2 processes round otherwise than 1 (each rank
# sums its micro-batches, then the ranks are summed). So across process counts the weights are
# compared to a fraction of one step (lr); the loss curves to float precision.
ACROSS_PROCESS_COUNTS = 0.01 * LORA.lr


def test_two_processes_train_the_curve_and_weights_of_one(single, double):
    root, rows = double
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert_same_curve(rows, log_rows(single / "run" / "log.jsonl"))
    assert_same_curve(log_rows(root / "out" / "train_log.jsonl"), log_rows(single / "out" / "train_log.jsonl"))
    for file in ("run/checkpoint/trainable.safetensors", "out/model.safetensors"):
        assert_same_weights(root / file, single / file, atol=ACROSS_PROCESS_COUNTS)


def test_killed_under_two_processes_resumes_to_the_same_curve(
    tiny_checkpoints, records, single, double, tmp_path, monkeypatch
):
    model = tiny_checkpoints["qwen2_vl"]
    monkeypatch.setenv(INJECT_KILL, "1:2")  # rank 1 dies right after the step-2 checkpoint
    with pytest.raises(DataParallelFailure, match=r"rank 1 .*\n.*SIGKILL"):
        stage(model, records, tmp_path / "a", gpus=2)
    monkeypatch.delenv(INJECT_KILL)
    assert json.loads((tmp_path / "a" / "run" / "checkpoint" / "state.json").read_text())["step"] == 2
    assert not (tmp_path / "a" / "out").exists()
    shutil.copytree(tmp_path / "a", tmp_path / "b")

    resumed = stage(model, records, tmp_path / "a", gpus=2)
    assert [r["step"] for r in resumed] == [3, 4], "continues after the step-2 checkpoint"
    uninterrupted = double[0] / "out"
    assert_same_curve(log_rows(tmp_path / "a" / "out" / "train_log.jsonl"), log_rows(uninterrupted / "train_log.jsonl"))
    assert_same_weights(tmp_path / "a" / "out" / "model.safetensors", uninterrupted / "model.safetensors")

    # gpus is no part of the resume fingerprint: one process continues the same run
    assert [r["step"] for r in stage(model, records, tmp_path / "b", gpus=1)] == [3, 4]
    assert_same_curve(
        log_rows(tmp_path / "b" / "out" / "train_log.jsonl"), log_rows(single / "out" / "train_log.jsonl")
    )
    assert_same_weights(
        tmp_path / "b" / "out" / "model.safetensors", single / "out" / "model.safetensors", atol=ACROSS_PROCESS_COUNTS
    )


def test_out_of_memory_halves_the_micro_batch_on_every_rank(tiny_checkpoints, records, tmp_path, monkeypatch):
    """Both ranks go on at 1 x 8 accumulation (4 micro-batches each), as one process configured so."""
    model = tiny_checkpoints["qwen2_vl"]
    halved = replace(LORA, batch_size=1, grad_accum=8)
    reference = stage(model, records, tmp_path / "ref", gpus=1, until=2, settings=halved)
    monkeypatch.setenv(INJECT_OOM_ABOVE, "1")
    assert_same_curve(stage(model, records, tmp_path / "oom", gpus=2, until=2), reference)


def test_grad_accum_must_split_evenly_between_the_processes(tiny_checkpoints, records, tmp_path):
    with pytest.raises(ValueError, match=r"gpus: 3 needs grad_accum divisible by 3 .* got grad_accum 4"):
        stage(tiny_checkpoints["qwen2_vl"], records, tmp_path, gpus=3)


def test_a_failing_rank_reports_its_traceback(tiny_checkpoints, records, tmp_path):
    broken = [replace(r, image=str(tmp_path / "missing.png")) for r in records]
    with pytest.raises(DataParallelFailure, match=r"(?s)failed in rank \d .*Traceback.*missing\.png"):
        stage(tiny_checkpoints["qwen2_vl"], broken, tmp_path, gpus=2)


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    """Tiny DINOv2 + LM parts and shape videos, as in test_foveated_model."""
    root = tmp_path_factory.mktemp("foveated")
    build_foveated_parts(FOVEATED_SPEC, corpus_lines(), root / "parts")
    write_shape_videos(root / "data", "train", 20, seed=0, image_size=32, frames=3)
    write_shape_videos(root / "data", "val", 10, seed=0, image_size=32, frames=3)
    return root


def foveated_run(frames: Path, root: Path, gpus: int) -> None:
    parts = {role: str(frames / "parts" / role) for role in ("vision", "language")}
    train, val = (read_samples(frames / "data" / f"{split}.jsonl") for split in ("train", "val"))
    outputs = {name: root / name for name in ("model_dir", "log", "evals", "attention")}
    train_foveated(parts, train, val, FOVEATED, {"test": 1}, root / "state", outputs, device="cpu", gpus=gpus)


def test_foveated_two_processes_train_the_curve_and_weights_of_one(frames, tmp_path):
    foveated_run(frames, tmp_path / "one", gpus=1)
    foveated_run(frames, tmp_path / "two", gpus=2)
    one, two = log_rows(tmp_path / "one" / "log"), log_rows(tmp_path / "two" / "log")
    assert [r["step"] for r in two] == [1, 2, 3]
    for key in ("loss", "loss_fine", "loss_coarse", "grad_norm", "attention_entropy", "samples"):
        assert [r[key] for r in two] == pytest.approx([r[key] for r in one], abs=1e-5), key
    evals_one, evals_two = log_rows(tmp_path / "one" / "evals"), log_rows(tmp_path / "two" / "evals")
    assert [r["step"] for r in evals_two] == [0, 2, 3]
    assert [r["val_loss"] for r in evals_two] == pytest.approx([r["val_loss"] for r in evals_one], abs=1e-5)
    assert_same_weights(
        tmp_path / "two" / "model_dir" / "model.safetensors",
        tmp_path / "one" / "model_dir" / "model.safetensors",
        atol=0.1 * FOVEATED.lr_connector,
    )


def test_foveated_batch_must_split_evenly_between_the_processes(frames, tmp_path):
    with pytest.raises(ValueError, match=r"gpus: 3 needs batch_size divisible by 3"):
        foveated_run(frames, tmp_path, gpus=3)
