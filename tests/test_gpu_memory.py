"""GPU memory: the pre-load check names the processes holding memory; a job that runs out of
memory halves its batch (inference) or its micro-batch (training) and goes on."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from vlmflow.core import gpu_memory
from vlmflow.core.settings import TrainSettings, halved_micro_batch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("batch", "accum", "expected"),
    [(16, 1, (8, 2)), (6, 2, (3, 4)), (5, 1, (1, 5)), (2, 3, (1, 6))],
)
def test_halved_micro_batch_keeps_the_effective_batch(batch, accum, expected) -> None:
    settings = halved_micro_batch(TrainSettings(batch_size=batch, grad_accum=accum))
    assert (settings.batch_size, settings.grad_accum) == expected
    assert settings.effective_batch_size == batch * accum


def test_out_of_memory_halves_the_batch_until_it_fits() -> None:
    sizes = []

    def run(batch_size: int) -> int:
        sizes.append(batch_size)
        gpu_memory.inject_oom(batch_size)
        return batch_size

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(gpu_memory.INJECT_OOM_ABOVE, "3")
        assert gpu_memory.halving_batch_size(run, 16) == 2
    assert sizes == [16, 8, 4, 2]


def test_any_other_error_fails_at_once() -> None:
    calls = []

    def run(batch_size: int) -> None:
        calls.append(batch_size)
        raise ValueError("a truncated image")

    with pytest.raises(ValueError, match="truncated image"):
        gpu_memory.halving_batch_size(run, 16)
    assert calls == [16]


def test_no_injection_without_the_variable(monkeypatch) -> None:
    monkeypatch.delenv(gpu_memory.INJECT_OOM_ABOVE, raising=False)
    gpu_memory.inject_oom(10_000)
    monkeypatch.setenv(gpu_memory.INJECT_OOM_ABOVE, "4")
    gpu_memory.inject_oom(4)
    with pytest.raises(torch.OutOfMemoryError):
        gpu_memory.inject_oom(5)


def test_weights_estimate_follows_the_load_dtype(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 2**21)  # 2 MiB of fp32 weights
    (tmp_path / "config.json").write_text(json.dumps({"dtype": "float32"}))
    assert gpu_memory.weights_mib(tmp_path, torch.bfloat16) == 1.0
    assert gpu_memory.weights_mib(tmp_path, torch.float32) == 2.0


def test_too_little_free_memory_names_the_holders(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (500 * 2**20, 80_000 * 2**20))
    monkeypatch.setattr(gpu_memory, "gpu_processes", lambda: ["4242, python train_old.py, 79000 MiB"])
    with pytest.raises(gpu_memory.InsufficientGpuMemory, match=r"500 MiB free of 80000 MiB") as err:
        gpu_memory.check_free_memory(16_000)
    assert "4242, python train_old.py, 79000 MiB" in str(err.value)
    gpu_memory.check_free_memory(400)  # enough: no error


def test_no_rule_retries_by_default() -> None:
    """Out of memory is handled inside the job; any other failure fails once (`--retries` still
    applies when a user passes it)."""
    for path in sorted((REPO / "rules").rglob("*.smk")):
        assert not re.search(r"^\s+retries:", path.read_text(), flags=re.MULTILINE), path
