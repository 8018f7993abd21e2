"""Atomic writes keep the umask's permissions; checkpoints survive a leftover and load safely."""

from __future__ import annotations

import os
import random
import stat

import numpy as np
import pytest
import torch
from transformers import get_cosine_schedule_with_warmup

from vlmflow.core.checkpoint import load_state, save_state
from vlmflow.core.io import atomic_directory, folder_signature, write_json


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_outputs_get_the_umask_permissions(tmp_path, umask_022):
    """Issue 19 (6): temporary files are 0600 and folders 0700; published results are not."""
    write_json(tmp_path / "metrics.json", {"a": 1})
    with atomic_directory(tmp_path / "checkpoint") as folder:
        (folder / "config.json").write_text("{}")
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "checkpoint").stat().st_mode) == 0o755


def test_folder_signature_changes_when_a_file_is_rewritten(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"a" * 8)
    before = folder_signature(tmp_path)
    os.utime(tmp_path / "model.safetensors", ns=(1, 1))
    assert folder_signature(tmp_path) != before and list(before) == ["model.safetensors"]


def tiny_run() -> tuple[torch.nn.Module, torch.optim.Optimizer, object]:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = get_cosine_schedule_with_warmup(optimizer, 1, 10)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


def test_a_leftover_old_checkpoint_does_not_block_saving(tmp_path):
    """Issue 19 (6): a kill between the two renames of a save leaves `checkpoint.old`; every later
    save used to fail on it."""
    model, optimizer, scheduler = tiny_run()
    checkpoint = tmp_path / "checkpoint"
    save_state(checkpoint, model, optimizer, scheduler, 1, {"run": 1})
    (tmp_path / "checkpoint.old").mkdir()
    (tmp_path / "checkpoint.old" / "state.json").write_text("{}")
    save_state(checkpoint, model, optimizer, scheduler, 2, {"run": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_the_optimizer_state_loads_with_weights_only(tmp_path, monkeypatch):
    """Issue 19 (6): `optimizer.pt` holds only tensors and plain values, so it loads with
    `weights_only=True` and restores every RNG exactly."""
    model, optimizer, scheduler = tiny_run()
    save_state(tmp_path / "checkpoint", model, optimizer, scheduler, 1, {})
    after_save = (np.random.rand(), random.random(), torch.rand(1).item())
    loaded = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loaded.append(k) or real_load(*a, **k))
    load_state(tmp_path / "checkpoint", model, optimizer, scheduler)
    assert loaded == [{"weights_only": True}]
    assert (np.random.rand(), random.random(), torch.rand(1).item()) == after_save
