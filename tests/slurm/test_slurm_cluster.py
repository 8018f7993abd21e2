"""profiles/slurm on a real (one-node, GPU-less) SLURM cluster started by the test itself.

Installs slurm-wlm + munge with apt when missing (root only), starts munged/slurmctld/slurmd on a
config in a temporary directory, runs the reduced workflow to results/summary.csv through
`snakemake --profile profiles/slurm`, and checks every job went through sbatch.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from slurm_cluster import LocalSlurmCluster, missing_prerequisite

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
WORKFLOW_FILES = ["Snakefile", "rules", "workflow", "envs", "profiles"]


def gpu_rules() -> list[str]:
    """Every rule whose resources ask for a GPU, and the rules derived from one by `use rule`."""
    text = "\n".join(path.read_text() for path in sorted((REPO / "rules").glob("*.smk")))
    blocks = re.split(r"^(?=rule \w+:)", text, flags=re.MULTILINE)
    asks = re.compile(r"\*\*(GPU_RESOURCES|gpu_resources\()")  # one GPU, or the experiment's `gpus`
    rules = [re.match(r"rule (\w+):", b).group(1) for b in blocks if b.startswith("rule ") and asks.search(b)]
    rules += [
        derived for base, derived in re.findall(r"^use rule (\w+) as (\w+)", text, flags=re.MULTILINE) if base in rules
    ]
    return rules


GPU_RULES = gpu_rules()
TARGET = "results/summary.csv"

pytestmark = pytest.mark.slurm


def skip(reason: str):
    print(f"[slurm] SKIP: {reason}")
    pytest.skip(reason)


def cluster_overrides() -> list[str]:
    """What the GPU-less test cluster needs on top of profiles/slurm."""
    return [
        # no GPUs and ~1 node of memory: the GPU rules must not ask for --gpus or 16-32 GB
        "--set-resources",
        *(f"{rule}:gpu=0" for rule in GPU_RULES),
        *(f"{rule}:mem_mb=2000" for rule in GPU_RULES),
        "--default-resources",
        "slurm_partition=debug",
        "mem_mb=1000",
        "runtime=30",
        "cpus_per_task=1",
        "--slurm-no-account",  # no accounting database to validate an account against
        "--slurm-init-seconds-before-status-checks",
        "5",
    ]


def copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, dest / name)
    config = yaml.safe_load((REPO / "tests" / "workflow" / "config.yaml").read_text())
    (dest / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return dest


def test_profile_runs_the_reduced_workflow_on_slurm(capsys):
    reason = missing_prerequisite()  # installs slurm-wlm and munge with apt where they are missing
    if reason:
        skip(reason)

    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="vlmflow-slurm-"))
    try:
        with LocalSlurmCluster(root / "cluster") as cluster:
            print(
                f"[slurm] cluster up on {cluster.host}: {cluster.cpus} CPUs, {cluster.memory_mb} MB, "
                f"SLURM_CONF={cluster.conf}"
            )
            workdir = copy_workflow(root / "flow")
            command = [SNAKEMAKE, "--profile", "profiles/slurm", TARGET, *cluster_overrides()]
            print("[slurm] running:", " ".join(command))
            run = subprocess.run(command, cwd=workdir, env=cluster.env, capture_output=True, text=True, timeout=1800)
            output = run.stdout + run.stderr
            assert run.returncode == 0, output[-8000:] + "\n" + cluster.log_tail("slurmctld")

            submitted = re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", output)
            slurm_ids = [slurm_id for _, slurm_id in submitted]
            with capsys.disabled():  # the job ids belong in the test run's own output
                print(f"\n[slurm] {len(slurm_ids)} jobs ran through sbatch, SLURM job ids: {', '.join(slurm_ids)}")
            assert slurm_ids and len(set(slurm_ids)) == len(slurm_ids)
            assert "--gpus" not in output  # the GPU override reached sbatch
            logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))
            assert logs and "has been submitted with SLURM jobid" in logs[-1].read_text()
            summary = (workdir / TARGET).read_text().splitlines()
            assert summary[0].startswith("experiment,") and len(summary) > 1
            for log in ("logs/summary.log", "logs/vqa/guide_vqav2/infer.log"):
                assert (workdir / log).is_file(), log
            # the final count: a checkpoint (the foveated sweep decision) adds jobs to the first plan
            done = re.findall(r"^(\d+) of (\d+) steps \(100%\) done$", output, flags=re.MULTILINE)
            local = len(re.findall(r"^local(?:rule|checkpoint) ", output, flags=re.MULTILINE))
            assert done, output[-3000:]
            assert len(slurm_ids) + local == int(done[-1][1]), (len(slurm_ids), local, done[-1])
            # the controller saw them all and they all completed
            states = subprocess.run(
                ["squeue", "-h", "-t", "all", "-o", "%i %T"],
                env=cluster.env,
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
            seen = dict(line.split() for line in states.splitlines() if line.strip())
            assert all(seen.get(i) == "COMPLETED" for i in slurm_ids), seen
    finally:
        print(f"[slurm] took {time.monotonic() - started:.0f} s")
        shutil.rmtree(root, ignore_errors=True)  # the cluster's state and the run (about 17 MB)
