"""Workflow overhead: what Snakemake and our rule files cost before and between model runs.

- **No-op re-run**: `snakemake --cores 2` in a finished run of the default (nothing to do), the
  command a user types to check that everything is up to date.
- **Dry run at scale**: `snakemake -n` on the default config with 1,000 and 10,000 generated VQA
  experiments added (models x datasets x batch sizes x token budgets), in a scratch copy of the
  workflow: parsing, schema validation, input functions and DAG building for ~2 jobs each.
- **Start to first job**: a fresh copy of the workflow with nothing built, from launching
  `snakemake --cores 2` to Snakemake starting its first job (then stopped).

    python benchmarks/workflow_overhead.py --run-dir .   # a finished default run
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from vlmflow.core.io import write_json

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = (
    "Snakefile",
    "rules",
    "workflow",
    "envs",
    "profiles",
    "resources/zoo",
)  # the zoo: the default starts from it
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def snakemake(workdir: Path, *args: str, timeout: int = 1800) -> tuple[float, subprocess.CompletedProcess]:
    """Wall time and result of one Snakemake command."""
    start = time.perf_counter()
    run = subprocess.run([SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - start, run


def scratch_copy(dest: Path, config: dict) -> Path:
    """The workflow's files, the shipped zoo and `config` in `dest` (no results, no other resources)."""
    dest.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, dest / name)
    (dest / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return dest


def generated_config(n: int) -> dict:
    """The default config plus `n` VQA experiments over every model, val dataset and a few settings."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    models = [*config["models"], *config.get("train", {}).get("experiments", {})]
    datasets = [name for name in config["datasets"] if name.endswith("_val")]
    variations = itertools.cycle(itertools.product(models, datasets, (8, 16, 32), (4, 8, 16)))
    for i, (model, dataset, batch, tokens) in zip(range(n), variations):
        config["vqa"]["experiments"][f"sweep_{i:05d}"] = {
            "model": model, "dataset": dataset, "batch_size": batch, "max_new_tokens": tokens,
        }  # fmt: skip
    return config


def no_op_rerun(run_dir: Path, repeats: int) -> dict:
    """Median wall time of `snakemake --cores 2` with nothing to do."""
    seconds, check = snakemake(run_dir, "--cores", "2", "-n")
    if "Nothing to be done" not in check.stdout + check.stderr:
        raise SystemExit(f"{run_dir}: the default run is not finished (snakemake -n plans jobs); run `make run` first")
    runs = []
    for _ in range(repeats):
        seconds, run = snakemake(run_dir, "--cores", "2")
        if run.returncode or "Nothing to be done" not in run.stdout + run.stderr:
            raise SystemExit(f"no-op re-run did something or failed:\n{run.stderr[-2000:]}")
        runs.append(seconds)
    return {"seconds": statistics.median(runs), "runs": runs}


def dry_run(n: int, repeats: int, scratch: Path) -> dict:
    """Median wall time of `snakemake -n` with `n` generated experiments, and the jobs it planned."""
    workdir = scratch_copy(scratch / f"dry_{n}", generated_config(n))
    runs, jobs = [], None
    for _ in range(repeats):
        seconds, run = snakemake(workdir, "-n", "--cores", "2")
        if run.returncode:
            raise SystemExit(f"dry run with {n} experiments failed:\n{run.stderr[-3000:]}")
        runs.append(seconds)
        total = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("total")]
        jobs = int(total[-1].split()[-1]) if total else None
    return {"experiments": n, "jobs": jobs, "seconds": statistics.median(runs), "runs": runs}


def first_job(repeats: int, scratch: Path) -> dict:
    """Median seconds from launching `snakemake --cores 2` on a fresh copy to its first job."""
    runs = []
    for i in range(repeats):
        workdir = scratch_copy(scratch / f"first_{i}", yaml.safe_load((REPO / "config.yaml").read_text()))
        start = time.perf_counter()
        process = subprocess.Popen([SNAKEMAKE, "--cores", "2"], cwd=workdir, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
        try:
            for line in process.stdout:
                if line.startswith(("rule ", "localrule ")):
                    runs.append(time.perf_counter() - start)
                    break
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=120)
    return {"seconds": statistics.median(runs), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, default=REPO, help="a finished run of the default workflow")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000], help="generated experiments per dry run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "workflow_overhead.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vlmflow-overhead-") as tmp:
        scratch = Path(tmp)
        result = {
            "snakemake": subprocess.run([SNAKEMAKE, "--version"], capture_output=True, text=True).stdout.strip(),
            "no_op_rerun": no_op_rerun(args.run_dir, args.repeats),
            "dry_runs": [dry_run(n, args.repeats, scratch) for n in args.sizes],
            "first_job": first_job(args.repeats, scratch),
        }
    write_json(args.out, result)
    print(
        f"no-op re-run {result['no_op_rerun']['seconds']:.2f} s; start to first job {result['first_job']['seconds']:.2f} s"
    )
    for dry in result["dry_runs"]:
        print(f"dry run, {dry['experiments']} experiments ({dry['jobs']} jobs): {dry['seconds']:.1f} s")


if __name__ == "__main__":
    main()
