"""Give each running GPU job its own device(s) through `CUDA_VISIBLE_DEVICES`.

`snakemake --resources gpu=2` only counts GPUs; it never says which device a job should use, so
concurrent jobs all land on device 0. `gpu_slot(count)` picks `count` free devices by taking an
exclusive non-blocking `flock` on one lock file per device (`<lock_dir>/gpu-<id>.lock`), points
`CUDA_VISIBLE_DEVICES` at them for the duration, and releases them on exit. flock locks belong to
the open file, so the kernel drops them when the process dies: a crashed or SIGKILLed job frees
its slot with no cleanup code and no stale-lock handling.

Enter the slot before the first CUDA call: CUDA reads `CUDA_VISIBLE_DEVICES` once, when it
initialises, so a job that has already touched the GPU keeps whatever it saw then. Importing
torch is fine; `torch.cuda.device_count()` counts through NVML without initialising CUDA.

`VLMFLOW_JOBS_PER_GPU=k` lets k jobs share each device (one lock file per share: `gpu-<id>.lock`,
`gpu-<id>.1.lock`, ...): small models that leave a GPU mostly idle, as the tiny zoo's pretraining,
then train side by side on one GPU under `--resources gpu=<devices x k>`. A job of several GPUs
still gets distinct devices.

Locks are per user (default dir `<tmp>/vlmflow-gpu-locks-<uid>`) and per machine (/tmp is
node-local); override the dir with `VLMFLOW_GPU_LOCK_DIR` or `lock_dir`. Under SLURM
(`SLURM_JOB_ID` set) the devices are the ones SLURM assigned to the job (its
`CUDA_VISIBLE_DEVICES`), whose ids are job-relative, so locks go to a per-job subdirectory
`slurm-<jobid>`: a job submitted per rule (the SLURM executor) never waits on another job, while
several local jobs inside one allocation (`salloc`, then `snakemake --resources gpu=N`) still
get distinct devices.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def available_devices() -> list[str]:
    """Device ids this process may hand out: `VLMFLOW_GPUS` (an override, "" means none), else
    a non-empty `CUDA_VISIBLE_DEVICES`, else every device torch sees (none on a CPU machine)."""
    for var in ("VLMFLOW_GPUS", "CUDA_VISIBLE_DEVICES"):
        value = os.environ.get(var)
        if value is not None and (value.strip() or var == "VLMFLOW_GPUS"):
            return [d.strip() for d in value.split(",") if d.strip()]
    import torch  # lazy: only needed when nothing above says which devices exist

    return [str(i) for i in range(torch.cuda.device_count())]


def jobs_per_gpu() -> int:
    """How many jobs may share one device: `VLMFLOW_JOBS_PER_GPU` (default 1)."""
    value = os.environ.get("VLMFLOW_JOBS_PER_GPU", "1")
    if not value.strip().isdigit() or int(value) < 1:
        raise ValueError(f"VLMFLOW_JOBS_PER_GPU must be a whole number >= 1, got {value!r}")
    return int(value)


def default_lock_dir() -> Path:
    """Where lock files live unless `lock_dir` is given: `VLMFLOW_GPU_LOCK_DIR`, else per user."""
    base = os.environ.get("VLMFLOW_GPU_LOCK_DIR") or Path(tempfile.gettempdir(), f"vlmflow-gpu-locks-{os.getuid()}")
    return Path(base)


def _lock_path(lock_dir: Path, device: str, share: int = 0) -> Path:
    # device ids may be UUIDs or MIG ids with "/"; keep the file name flat
    name = re.sub(r"[^A-Za-z0-9._-]", "_", device)
    return lock_dir / (f"gpu-{name}.lock" if share == 0 else f"gpu-{name}.{share}.lock")


def _try_lock(path: Path) -> int | None:
    """Open and exclusively lock `path` without waiting; the fd on success, None if held."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())  # for the timeout message only
    return fd


def _lock_a_share(lock_dir: Path, device: str, shares: int) -> int | None:
    """The fd of the first free one of `device`'s `shares` locks, or None when all are held."""
    for share in range(shares):
        fd = _try_lock(_lock_path(lock_dir, device, share))
        if fd is not None:
            return fd
    return None


def _release(fd: int) -> None:
    os.ftruncate(fd, 0)  # so a later reader never sees our pid as a holder
    os.close(fd)  # closing the only descriptor drops the flock


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid else "pid unknown"


@contextmanager
def gpu_slot(
    count: int = 1,
    lock_dir: str | Path | None = None,
    timeout: float = 3600.0,
    poll: float = 0.2,
) -> Iterator[list[str]]:
    """Hold `count` devices no other `gpu_slot` holds (a free share of each, with
    `VLMFLOW_JOBS_PER_GPU`), with `CUDA_VISIBLE_DEVICES` set to them.

    Yields the chosen ids; yields [] and leaves the env alone when `count` is 0 or there are no
    devices (CPU machine), so the same job code runs everywhere. Waits up to `timeout` seconds
    for enough devices to be free at once, then raises TimeoutError naming the busy ones.
    """
    if count < 0:
        raise ValueError(f"gpu_slot: count must be >= 0, got {count}")
    devices, shares = available_devices(), jobs_per_gpu()
    if count == 0 or not devices:
        yield []
        return
    if count > len(devices):
        raise ValueError(f"gpu_slot: {count} GPUs requested but only {devices} exist")
    base = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    slurm_job = os.environ.get("SLURM_JOB_ID")
    locks = base / f"slurm-{slurm_job}" if slurm_job else base
    locks.mkdir(parents=True, exist_ok=True, mode=0o700)

    deadline = time.monotonic() + timeout
    while True:
        held: dict[str, int] = {}
        busy: list[str] = []
        for device in devices:
            if len(held) == count:
                break
            fd = _lock_a_share(locks, device, shares)
            if fd is None:
                busy.append(device)
            else:
                held[device] = fd
        if len(held) == count:
            break
        for fd in held.values():  # never sit on a partial set: others may need those devices
            _release(fd)
        if time.monotonic() >= deadline:
            holders = ", ".join(f"{d} ({_holder(_lock_path(locks, d))})" for d in busy)
            raise TimeoutError(
                f"gpu_slot: no {count} free GPU(s) of {devices} after {timeout:g}s; busy: {holders}; lock dir {locks}"
            )
        time.sleep(poll)

    previous = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(held)
    try:
        yield list(held)
    finally:
        if previous is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = previous
        for fd in held.values():
            _release(fd)
