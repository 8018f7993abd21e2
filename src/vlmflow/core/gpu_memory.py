"""GPU memory: fail early when another process holds the device, and shrink the batch on retry.

A model that does not fit fails minutes into a job with a bare CUDA out-of-memory error; a
forgotten process on the node (the surgical-VQA seed lost days to one) looks exactly the same. So a
GPU job checks free memory before loading and names the processes that hold it. A job that still
runs out of memory is retried by Snakemake (`retries:`) with the batch halved per attempt
(`vlmflow.core.settings.batch_divisor`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import torch


class InsufficientGpuMemory(RuntimeError):
    """Less free device memory than the model needs, before anything was loaded."""


def weights_mib(checkpoint: str | Path, dtype: torch.dtype) -> float:
    """What a checkpoint's weights take in `dtype`: their size on disk, halved when fp32 weights
    load in bf16. A lower bound of what loading needs."""
    size = sum(p.stat().st_size for p in Path(checkpoint).glob("*.safetensors")) / 2**20
    config = json.loads((Path(checkpoint) / "config.json").read_text())
    stored = config.get("dtype") or config.get("torch_dtype") or "float32"
    return size / 2 if stored == "float32" and dtype in (torch.bfloat16, torch.float16) else size


def gpu_processes() -> list[str]:
    """The compute processes on the GPUs as nvidia-smi lists them ("pid, name, used memory")."""
    if shutil.which("nvidia-smi") is None:
        return []
    query = ["nvidia-smi", "--query-compute-apps=pid,process_name,used_memory", "--format=csv,noheader"]
    result = subprocess.run(query, capture_output=True, text=True, timeout=30)
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def check_free_memory(required_mib: float, device: int = 0) -> None:
    """Raise InsufficientGpuMemory, listing the processes holding memory, when the device has less
    than `required_mib` free. Does nothing without CUDA."""
    if not torch.cuda.is_available():
        return
    free, total = torch.cuda.mem_get_info(device)
    free_mib, total_mib = free / 2**20, total / 2**20
    if free_mib >= required_mib:
        return
    holders = gpu_processes()
    listing = "\n".join(f"  {line}" for line in holders) or "  (nvidia-smi lists none)"
    raise InsufficientGpuMemory(
        f"GPU {device}: {free_mib:.0f} MiB free of {total_mib:.0f} MiB, but the model needs at least "
        f"{required_mib:.0f} MiB. Processes holding GPU memory:\n{listing}\n"
        "Stop them, or run this job on another device."
    )
