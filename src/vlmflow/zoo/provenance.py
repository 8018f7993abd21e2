"""What a shipped zoo checkpoint's provenance records: digests of files and weights, the commit, the curve.

Shared by the zoo's pretraining (`vlmflow.pretrain`) and the foveated parts' (`vlmflow.foveated.parts`).
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import torch

from vlmflow.core.io import read_jsonl

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
CURVE_POINTS = 200  # training-curve rows kept in the provenance (evenly spaced, the last included)


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def folder_digest(path: str | Path) -> str:
    """One digest of every file under a folder: relative names and contents, in name order."""
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(file.relative_to(root).as_posix().encode())
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def state_digest(model: torch.nn.Module) -> str:
    """A digest of every parameter and buffer (names, dtypes, shapes and bytes), in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def float_machine() -> str:
    """What sets a CPU run's floating-point results besides the code and the data: torch's version and
    the CPU kernels it picked (AVX2, AVX512, ...). First steps recorded on one reproduce bit for bit on
    the same; on another, the build's weights still do and the losses agree to float rounding."""
    return f"torch {torch.__version__} cpu {torch.backends.cpu.get_cpu_capability()}"


def current_commit(repository: str | Path = ".") -> str:
    """The commit the pretraining ran at ("+dirty" when tracked files differ), or "unknown"."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(repository), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repository), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def first_steps_record(data_sha256: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    """A run's first steps as its provenance keeps them, with where they ran (one CPU thread)."""
    return {
        "commit": current_commit(),
        "data_sha256": data_sha256,
        "threads": 1,
        "device": "cpu",
        "machine": float_machine(),
        "steps": steps,
    }


def training_curve(train_log: Path | None, samples_per_step: int) -> list[dict[str, float]]:
    """[{samples, loss}] up to this scale in at most CURVE_POINTS windows of consecutive steps:
    each window's mean loss at its last step (the last window may be shorter)."""
    if train_log is None:
        return []
    rows = read_jsonl(train_log)
    stride = max(1, -(-len(rows) // CURVE_POINTS))
    windows = [rows[i : i + stride] for i in range(0, len(rows), stride)]
    return [
        {"samples": w[-1]["step"] * samples_per_step, "loss": round(sum(r["loss"] for r in w) / len(w), 5)}
        for w in windows
    ]
