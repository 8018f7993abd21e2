"""GPU slot allocation with fake device ids (`VLMFLOW_GPUS`) and real per-process flocks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vlmflow.core.gpu_slots import available_devices, gpu_slot


@pytest.fixture
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private lock dir, with no SLURM job and a known CUDA_VISIBLE_DEVICES."""
    locks = tmp_path / "locks"
    monkeypatch.setenv("VLMFLOW_GPU_LOCK_DIR", str(locks))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "outer")
    return locks


def _spawn(code: str, gpus: str) -> subprocess.Popen[str]:
    env = {**os.environ, "VLMFLOW_GPUS": gpus}
    code = "from vlmflow.core.gpu_slots import gpu_slot\n" + textwrap.dedent(code)
    cmd = [sys.executable, "-c", code]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)


def _hold(device: str) -> subprocess.Popen[str]:
    """A job that holds `device` until killed; returns once it has the lock."""
    proc = _spawn(
        """
        import time
        with gpu_slot(1, timeout=30):
            print("ready", flush=True)
            time.sleep(60)
        """,
        device,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(timeout=10)


def test_concurrent_jobs_never_share_a_device(lock_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "jobs"
    out.mkdir()
    code = f"""
        import json, os, time
        with gpu_slot(2, timeout=60, poll=0.02) as devices:
            start = time.monotonic()
            seen = os.environ["CUDA_VISIBLE_DEVICES"]
            time.sleep(0.3)
            end = time.monotonic()
        record = {{"start": start, "end": end, "devices": devices, "seen": seen}}
        open(os.path.join({str(out)!r}, str(os.getpid())), "w").write(json.dumps(record))
    """
    procs = [_spawn(code, "0,1,2,3") for _ in range(6)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 6
    jobs = [json.loads(f.read_text()) for f in out.iterdir()]
    assert len(jobs) == 6
    for job in jobs:
        assert job["seen"] == ",".join(job["devices"])
        assert len(set(job["devices"])) == 2 and set(job["devices"]) <= {"0", "1", "2", "3"}
    for i, a in enumerate(jobs):
        for b in jobs[i + 1 :]:
            if a["start"] < b["end"] and b["start"] < a["end"]:
                assert not set(a["devices"]) & set(b["devices"]), (a, b)
    events = sorted([(j["start"], 1) for j in jobs] + [(j["end"], -1) for j in jobs])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert peak <= 2


def test_killed_job_frees_its_slot(lock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLMFLOW_GPUS", "7")
    holder = _hold("7")
    try:
        with pytest.raises(TimeoutError), gpu_slot(1, timeout=0):
            pass
    finally:
        _kill(holder)  # SIGKILL: no cleanup code runs in the holder
    assert holder.returncode == -signal.SIGKILL
    with gpu_slot(1, timeout=5, poll=0.02) as devices:
        assert devices == ["7"]
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "7"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "outer"


def test_timeout_names_busy_device_holder_and_lock_dir(lock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLMFLOW_GPUS", "7")
    holder = _hold("7")
    try:
        with pytest.raises(TimeoutError) as err, gpu_slot(1, timeout=0.2, poll=0.05):
            pass
    finally:
        _kill(holder)
    message = str(err.value)
    assert f"7 (pid {holder.pid})" in message
    assert str(lock_dir) in message
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "outer"


def test_jobs_per_gpu_share_a_device_and_no_more(lock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """VLMFLOW_JOBS_PER_GPU=2: two jobs get the one device, a third waits; a two-GPU job still needs
    two distinct devices."""
    monkeypatch.setenv("VLMFLOW_GPUS", "0")
    monkeypatch.setenv("VLMFLOW_JOBS_PER_GPU", "2")
    first = _spawn(
        """
        import os, time
        with gpu_slot(1, timeout=30):
            print(os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
            time.sleep(60)
        """,
        "0",
    )
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "0"
        with gpu_slot(1, timeout=0) as devices:
            assert devices == ["0"] and os.environ["CUDA_VISIBLE_DEVICES"] == "0"
            with pytest.raises(TimeoutError, match=r"busy: 0 \("), gpu_slot(1, timeout=0.1, poll=0.05):
                pass
        with pytest.raises(ValueError, match=r"2 GPUs requested but only \['0'\] exist"), gpu_slot(2, timeout=0):
            pass
    finally:
        _kill(first)
    monkeypatch.setenv("VLMFLOW_JOBS_PER_GPU", "0")
    with pytest.raises(ValueError, match="VLMFLOW_JOBS_PER_GPU must be a whole number >= 1, got '0'"), gpu_slot(1):
        pass


def test_partial_set_is_not_held_while_waiting(lock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLMFLOW_GPUS", "0,1")
    holder = _hold("0")
    try:
        with pytest.raises(TimeoutError, match=r"busy: 0 \("), gpu_slot(2, timeout=0.1, poll=0.05):
            pass
        with gpu_slot(1, timeout=0) as devices:  # device 1 was given back after the failed try
            assert devices == ["1"]
    finally:
        _kill(holder)


def test_env_restored_after_error_and_when_previously_unset(lock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLMFLOW_GPUS", "0,1")
    with pytest.raises(RuntimeError), gpu_slot(2) as devices:
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1" == ",".join(devices)
        raise RuntimeError("job failed")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "outer"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with gpu_slot(2, timeout=0) as devices:  # the failed job released both
        assert devices == ["0", "1"]
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_cpu_machine_yields_nothing_and_leaves_env(lock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLMFLOW_GPUS", "")
    with gpu_slot(1) as devices:
        assert devices == []
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "outer"
    monkeypatch.delenv("VLMFLOW_GPUS")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr("torch.cuda.device_count", lambda: 0)
    with gpu_slot(2) as devices:
        assert devices == []
        assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert not lock_dir.exists()


def test_zero_count_and_impossible_count(lock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLMFLOW_GPUS", "0")
    with gpu_slot(0) as devices:
        assert devices == []
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "outer"
    with pytest.raises(ValueError, match="2 GPUs requested"), gpu_slot(2):
        pass


def test_available_devices_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("torch.cuda.device_count", lambda: 3)
    monkeypatch.setenv("VLMFLOW_GPUS", " 4, 5 ")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert available_devices() == ["4", "5"]
    monkeypatch.delenv("VLMFLOW_GPUS")
    assert available_devices() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert available_devices() == ["0", "1", "2"]


def test_slurm_locks_per_job(lock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SLURM device ids are job-relative: other jobs never block, one job's local jobs do."""
    monkeypatch.delenv("VLMFLOW_GPUS", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # what SLURM assigned
    monkeypatch.setenv("SLURM_JOB_ID", "101")
    with gpu_slot(1, timeout=0) as first:
        monkeypatch.setenv("SLURM_JOB_ID", "102")
        with gpu_slot(1, timeout=0) as other_job:
            assert first == other_job == ["0"]
        monkeypatch.setenv("SLURM_JOB_ID", "101")
        with pytest.raises(TimeoutError, match="slurm-101"), gpu_slot(1, timeout=0):
            pass
    assert sorted(p.name for p in lock_dir.iterdir()) == ["slurm-101", "slurm-102"]
