"""GPU memory: fail early when another process holds the device, and halve the batch when a job
runs out of memory.

A model that does not fit fails minutes into a job with a bare CUDA out-of-memory error; a
forgotten process on the node (the surgical-VQA seed lost days to one) looks exactly the same. So a
GPU job checks free memory before loading and names the processes that hold it. A job that still
runs out of memory handles it itself, inside the job: inference halves its batch and goes on from
the first row not yet written (accelerate's `find_executable_batch_size`), training halves its
micro-batch and doubles the accumulation (same samples per optimizer step). Any other error fails
the job once, with its message in the log. A model spread over several GPUs (a device map) is
checked on every GPU the job sees.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import torch
from accelerate.utils import find_executable_batch_size
from accelerate.utils.memory import clear_device_cache, should_reduce_batch_size

# Test hook: with this variable set to N, any batch larger than N raises torch.OutOfMemoryError, as
# a GPU too small for it would (the workflow test runs the real rules with it).
INJECT_OOM_ABOVE = "VLMFLOW_INJECT_OOM_ABOVE"

T = TypeVar("T")


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


def check_free_memory_across(required_mib: float, caps_mib: Mapping[int, float] | None = None) -> None:
    """For a model spread over the job's GPUs (a device map): raise InsufficientGpuMemory, listing
    each GPU's free memory and the processes holding memory, when a GPU with a max_memory cap has
    less than its cap free, or (without caps) all of them together less than `required_mib`.
    Does nothing without CUDA."""
    if not torch.cuda.is_available():
        return
    free = {device: torch.cuda.mem_get_info(device) for device in range(torch.cuda.device_count())}
    free_mib = {device: left / 2**20 for device, (left, _) in free.items()}
    if caps_mib:
        short = [d for d, cap in caps_mib.items() if free_mib[d] < cap]
        if not short:
            return
        problem = f"GPU {', '.join(map(str, short))} has less free memory than its max_memory cap"
    else:
        if sum(free_mib.values()) >= required_mib:
            return
        problem = (
            f"the job's {len(free)} GPU(s) have {sum(free_mib.values()):.0f} MiB free together, but the model "
            f"needs at least {required_mib:.0f} MiB"
        )
    devices = "\n".join(
        f"  GPU {d}: {free_mib[d]:.0f} MiB free of {total / 2**20:.0f} MiB"
        + (f" (max_memory {caps_mib[d]:.0f} MiB)" if caps_mib and d in caps_mib else "")
        for d, (_, total) in free.items()
    )
    listing = "\n".join(f"  {line}" for line in gpu_processes()) or "  (nvidia-smi lists none)"
    raise InsufficientGpuMemory(
        f"{problem}:\n{devices}\nProcesses holding GPU memory:\n{listing}\n"
        "Stop them, lower max_memory, or run this job on other devices."
    )


def inject_oom(batch_size: int) -> None:
    """Raise torch.OutOfMemoryError for a batch above `$VLMFLOW_INJECT_OOM_ABOVE` (when it is set)."""
    limit = os.environ.get(INJECT_OOM_ABOVE)
    if limit and batch_size > int(limit):
        raise torch.OutOfMemoryError(f"CUDA out of memory. (injected: batch {batch_size} > {INJECT_OOM_ABOVE}={limit})")


def out_of_memory(error: BaseException) -> bool:
    """Whether `error` is a device (or host allocator) out-of-memory error, as accelerate reads it."""
    return isinstance(error, torch.OutOfMemoryError) or should_reduce_batch_size(error)


def free_memory() -> None:
    """Release what a failed batch left cached on the device."""
    clear_device_cache(garbage_collection=True)


def halving_batch_size(
    run: Callable[[int], T], batch_size: int, log: logging.Logger | None = None, what: str = "batch"
) -> T:
    """`run(batch_size)`, called again with half the batch size after each out-of-memory error
    (down to 1, then the error stands). `run` must start from its durable state each time."""
    size = batch_size

    def halve() -> int:
        nonlocal size
        size //= 2
        if log and size:
            log.warning("out of memory: %s size halved to %d", what, size)
        return size

    return find_executable_batch_size(run, starting_batch_size=batch_size, reduce_batch_size_fn=halve)()
