"""Pipeline overhead: the share of a finished default run's job time spent outside model passes.

Job wall times come from the run's Snakemake log (start and finish of every job, to the second)
and, for the rules with a `benchmark:` file, from that file. Model time comes from the engine:
the forward clock each inference-type job writes beside its log (`<log>.timing.json`,
`vlmflow.core.timing`), and for training the step times in the training logs (forward, backward and
optimizer step). Everything else, the interpreter and library imports, loading checkpoints,
reading data, writing results and the Snakemake scheduling between jobs, is overhead.

    python benchmarks/pipeline_overhead.py --run-dir .   # after `snakemake --cores 2` from scratch
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from vlmflow.core.io import write_json

REPO = Path(__file__).resolve().parents[1]
MODEL_JOB_IMPORTS = "import vlmflow.core.models, vlmflow.vqa.inference, vlmflow.core.gpu_slots, vlmflow.core.timing"
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def parse_log(path: Path) -> list[dict]:
    """Every job of one Snakemake log: rule, jobid, log file, benchmark file, start and end."""
    jobs: dict[str, dict] = {}
    stamp, current = None, None
    for line in path.read_text().splitlines():
        if m := STAMP.match(line):
            stamp = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
        elif m := re.match(r"^(?:local)?rule (\w+):$", line):
            current = {"rule": m.group(1), "start": stamp}
        elif current is not None and (m := re.match(r"^\s+(jobid|log|benchmark): (.*)$", line)):
            current[m.group(1)] = m.group(2).split(" (")[0]
            if m.group(1) == "jobid":
                jobs[current["jobid"]] = current
        elif m := re.match(r"^Finished jobid: (\d+)", line):
            if m.group(1) in jobs:
                jobs[m.group(1)]["end"] = stamp
            current = None
    return [job for job in jobs.values() if "end" in job]


def latest_full_log(run_dir: Path) -> Path:
    """The run's Snakemake log that finished the most jobs (the run from scratch)."""
    logs = sorted((run_dir / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        raise SystemExit(f"{run_dir}: no Snakemake logs; run the default workflow there first")
    return max(logs, key=lambda p: (len(parse_log(p)), p.name))


def job_seconds(run_dir: Path, job: dict) -> float:
    """The benchmark file's wall time when the rule has one (to the millisecond), else the log's."""
    bench = run_dir / job.get("benchmark", "-")
    if bench.is_file():
        header, row = bench.read_text().splitlines()[:2]
        return float(dict(zip(header.split("\t"), row.split("\t")))["s"])
    return (job["end"] - job["start"]).total_seconds()


def step_seconds(log_path: Path, batch: int, after: int = 0) -> float:
    """Seconds of the optimizer steps after step `after` in a vlmflow training log."""
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    return sum(batch / row["samples_per_s"] for row in rows if row["step"] > after)


def foveated_step_seconds(log_path: Path) -> float:
    """Seconds of the optimizer steps in a foveated run's log (each row: samples so far, samples/s)."""
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    seen = [0] + [row["samples"] for row in rows]
    return sum((now - before) / row["samples_per_s"] for before, now, row in zip(seen, seen[1:], rows))


def model_seconds(run_dir: Path, job: dict) -> float:
    """Seconds in model passes by the engine's own account; 0 for jobs that run no model."""
    log = run_dir / job.get("log", "-")
    timing = log.with_suffix(".timing.json")
    if timing.is_file():
        return json.loads(timing.read_text())["forward_s"]
    if job["rule"] == "train_foveated":
        return foveated_step_seconds(run_dir / "results" / "foveated" / log.parent.name / "log.jsonl")
    if job["rule"] in ("train_model", "sanity_overfit"):
        folder = run_dir / "results" / "finetune" / log.parent.name
        stages = sorted(folder.glob("step-*"), key=lambda p: int(p.name[5:]))
        settings = json.loads((stages[-1] / "vlmflow_train.json").read_text())
        batch = settings["batch_size"] * settings["grad_accum"]
        if job["rule"] == "sanity_overfit":
            return step_seconds(log.with_suffix(".steps.jsonl"), batch)
        step = int(log.stem.removeprefix("step-"))
        earlier = [int(p.name[5:]) for p in stages if int(p.name[5:]) < step]
        return step_seconds(folder / f"step-{step}" / "train_log.jsonl", batch, max(earlier, default=0))
    return 0.0


def start_seconds(run_dir: Path, job: dict) -> float | None:
    """Seconds from Snakemake starting the job to its script's first log line (the interpreter and
    the imports), to the second; None when the job's log has no start line."""
    log = run_dir / job.get("log", "-")
    if not log.is_file():
        return None
    if m := re.search(r"^==== (\S+ \S+) attempt started", log.read_text(errors="replace"), re.MULTILINE):
        return max(0.0, (datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S") - job["start"]).total_seconds())
    return None


def startup_seconds(repeats: int = 3) -> float:
    """Median seconds for a fresh interpreter to import what every model job imports first."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", MODEL_JOB_IMPORTS], check=True)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run-dir", type=Path, default=REPO, help="a finished run of the default workflow from scratch"
    )
    parser.add_argument("--cores", type=int, default=2, help="the --cores the run used")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "pipeline_overhead.json")
    args = parser.parse_args()
    log = latest_full_log(args.run_dir)
    jobs = parse_log(log)
    per_rule: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "job_s": 0.0, "model_s": 0.0, "start_s": 0.0})
    for job in jobs:
        if job["rule"] == "all":  # the target rule runs nothing
            continue
        entry = per_rule[job["rule"]]
        entry["jobs"] += 1
        entry["job_s"] += job_seconds(args.run_dir, job)
        entry["model_s"] += model_seconds(args.run_dir, job)
        entry["start_s"] += start_seconds(args.run_dir, job) or 0.0
    total_job = sum(e["job_s"] for e in per_rule.values())
    total_model = sum(e["model_s"] for e in per_rule.values())
    wall = (max(j["end"] for j in jobs) - min(j["start"] for j in jobs)).total_seconds()
    model_jobs = [e for e in per_rule.values() if e["model_s"] > 0]
    startup = startup_seconds()
    model_job_count = sum(e["jobs"] for e in model_jobs)
    result = {
        "log": str(log.relative_to(args.run_dir)),
        "jobs": len(jobs),
        "wall_s": wall,
        "cores": args.cores,
        "job_s": total_job,
        "model_s": total_model,
        "overhead_share": 1 - total_model / total_job,
        "overhead_share_model_jobs": 1 - total_model / sum(e["job_s"] for e in model_jobs),
        "core_occupancy": total_job / (wall * args.cores),
        "startup_s": startup,
        "model_jobs": model_job_count,
        "overhead_share_after_startup": 1 - total_model / (total_job - model_job_count * startup),
        "start_s": sum(e["start_s"] for e in per_rule.values()),  # measured in the run, every job
        "median_job_s": statistics.median(job_seconds(args.run_dir, j) for j in jobs),
        "per_rule": {
            rule: {**e, "overhead_share": 1 - e["model_s"] / e["job_s"] if e["job_s"] else None}
            for rule, e in sorted(per_rule.items(), key=lambda kv: -kv[1]["job_s"])
        },  # fmt: skip
    }
    write_json(args.out, result)
    print(f"{len(jobs)} jobs, wall {wall:.0f} s, job time {total_job:.0f} s, model passes {total_model:.0f} s: "
          f"overhead {result['overhead_share']:.1%} of job time")  # fmt: skip


if __name__ == "__main__":
    main()
