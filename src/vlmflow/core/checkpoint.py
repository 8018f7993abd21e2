"""Resumable training state used by every trainer: seeded data order, RNG, atomic checkpoints, logs.

A run saves its trainable weights, optimizer, schedule and RNG states together with a fingerprint
of what it trains; a restarted run restores the latest state of the same fingerprint and continues
to the exact same curve. In a data-parallel run every rank calls `save_state` and rank 0 writes
(with each rank's RNG states), and every rank restores the same state (its own RNG states).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel

from vlmflow.core.distributed import barrier, gather_to_main, is_main, rank
from vlmflow.core.io import write_json


def trainable_state(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """The parameters a run trains (requires_grad), on the CPU: what a checkpoint stores."""
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def sample_order(n: int, seed: int, start: int, count: int) -> list[int]:
    """Indices of samples `start .. start+count` of an endless stream of seeded epoch permutations.

    The data position is a pure function of (seed, samples seen), so a resumed run needs only the step.
    """
    out = []
    for position in range(start, start + count):
        epoch, offset = divmod(position, n)
        if offset == 0 or not out:
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
        out.append(perm[offset])
    return out


def rng_state() -> dict[str, Any]:
    """Every RNG a training step draws from, in types `torch.load(weights_only=True)` reads back."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    numpy_state = {"name": name, "keys": torch.from_numpy(keys.copy()), "pos": position}
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {**numpy_state, "has_gauss": has_gauss, "cached_gaussian": cached},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    numpy = state["numpy"]
    np.random.set_state(
        (numpy["name"], numpy["keys"].numpy(), numpy["pos"], numpy["has_gauss"], numpy["cached_gaussian"])
    )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(directory: Path, model, optimizer, scheduler, step: int, fingerprint: dict[str, Any]) -> None:
    """Write a resumable training state atomically (a temporary folder renamed into place).
    Data-parallel: every rank calls it, rank 0 writes, the others wait until it is in place."""
    rank_rngs = gather_to_main(rng_state())
    if is_main():
        _write_state(directory, model, optimizer, scheduler, step, fingerprint, rank_rngs)
    barrier()


def _write_state(
    directory: Path,
    model,
    optimizer,
    scheduler,
    step: int,
    fingerprint: dict[str, Any],
    rank_rngs: list[dict[str, Any]],
) -> None:
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    save_file(trainable_state(model), tmp / "trainable.safetensors")
    other = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rank_rngs[0]}
    if len(rank_rngs) > 1:
        other["rank_rngs"] = rank_rngs
    torch.save(other, tmp / "optimizer.pt")
    write_json(tmp / "state.json", {"step": step, "fingerprint": fingerprint})
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)  # a leftover of a kill: older than `directory`
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def read_state_step(directory: Path, fingerprint: dict[str, Any]) -> int | None:
    """The step of a saved state, or None when there is none or it belongs to another run."""
    path = directory / "state.json"
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    return state["step"] if state["fingerprint"] == json.loads(json.dumps(fingerprint)) else None


def load_state(directory: Path, model, optimizer, scheduler) -> None:
    weights = load_file(directory / "trainable.safetensors")
    params = dict(model.named_parameters())
    missing = set(weights) ^ {n for n, p in params.items() if p.requires_grad}
    if missing:
        raise ValueError(f"{directory}: trainable parameters do not match this model ({sorted(missing)[:3]} ...)")
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)
    other = torch.load(directory / "optimizer.pt", weights_only=True)
    optimizer.load_state_dict(other["optimizer"])
    scheduler.load_state_dict(other["scheduler"])
    rank_rngs = other.get("rank_rngs", [other["rng"]])  # a rank the saving run lacked takes rank 0's
    set_rng_state(rank_rngs[rank()] if rank() < len(rank_rngs) else other["rng"])


def checkpoint_candidates(checkpoint: Path) -> list[Path]:
    """A run's checkpoint and the previous one (`save_state` keeps it as `.old` while it swaps a
    new one in, so a kill in between leaves that)."""
    return [checkpoint, checkpoint.with_name(checkpoint.name + ".old")]


def restore_latest(candidates: Sequence[Path], fingerprint: dict[str, Any], model, optimizer, scheduler,
                   until: int | None = None) -> int:  # fmt: skip
    """Load the most advanced saved state of this run (not past `until`); its step, 0 when none."""
    steps = [(read_state_step(path, fingerprint), path) for path in candidates]
    usable = [(step, path) for step, path in steps if step is not None and (until is None or step <= until)]
    if not usable:
        return 0
    step, path = max(usable)
    load_state(path, model, optimizer, scheduler)
    return step


def truncate_log(path: Path, step: int) -> None:
    """Keep the log rows of steps <= `step` (the ones the restored state has seen)."""
    if not path.is_file():
        return
    rows = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    path.write_text("".join(row + "\n" for row in rows))
