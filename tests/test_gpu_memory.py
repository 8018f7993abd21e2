"""GPU memory: the pre-load check names the processes holding memory; OOM retries halve the batch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from vlmflow.core import gpu_memory
from vlmflow.core.settings import batch_divisor, retry_batch_size

REPO = Path(__file__).resolve().parents[1]


def test_batch_halves_per_attempt() -> None:
    assert [batch_divisor(a) for a in (1, 2, 3)] == [1, 2, 4]
    assert [retry_batch_size(16, batch_divisor(a)) for a in (1, 2, 3)] == [16, 8, 4]
    assert retry_batch_size(1, 4) == 1


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


def test_oom_retry_halves_the_batch_through_snakemake(tmp_path: Path) -> None:
    """A job that raises CUDA's out-of-memory error is retried with the rules' `attempt` resource
    function, its batch halved each time, until it fits (here: batches above 4 'do not fit')."""
    (tmp_path / "Snakefile").write_text(
        textwrap.dedent("""
        import torch
        from vlmflow.core.settings import batch_divisor, retry_batch_size

        rule infer:
            output: "predictions.txt"
            retries: 2
            resources: batch_divisor=lambda wildcards, attempt: batch_divisor(attempt)
            run:
                batch = retry_batch_size(16, resources.batch_divisor)
                with open("attempts.txt", "a") as log:
                    log.write(f"{batch}\\n")
                if batch > 4:
                    raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
                with open(output[0], "w") as out:
                    out.write(str(batch))
    """)
    )
    snakemake = str(Path(sys.executable).parent / "snakemake")
    run = subprocess.run([snakemake, "--cores", "1"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "attempts.txt").read_text().split() == ["16", "8", "4"]
    assert (tmp_path / "predictions.txt").read_text() == "4"


@pytest.mark.parametrize("rule_file", ["rules/vqa.smk", "rules/finetune.smk", "rules/guided.smk", "rules/probing.smk"])
def test_gpu_rules_retry_with_a_smaller_batch(rule_file: str) -> None:
    text = (REPO / rule_file).read_text()
    gpu_rules = text.count("**GPU_RESOURCES,")
    assert gpu_rules and text.count("retries: GPU_RETRIES") == gpu_rules
    common = (REPO / "rules" / "common.smk").read_text()
    assert '"batch_divisor": oom_batch_divisor' in common.split("GPU_RESOURCES = ")[1].splitlines()[0]
