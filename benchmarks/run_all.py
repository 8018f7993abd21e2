"""Every benchmark in one command, and benchmarks/RESULTS.md from their results.

    python benchmarks/run_all.py                 # about 28 minutes on a 2-core CPU, after `make run`
    python benchmarks/run_all.py --render-only   # RESULTS.md from the JSON files already there

Each benchmark runs as its own process (as a user would run it) and writes its JSON under
benchmarks/results/; this script then writes RESULTS.md: the machine, the versions, every figure
(medians of repeated runs) and the ratio or target beside it. The workflow benchmarks need a
finished run of the default workflow from scratch in `--run-dir` (the repository by default);
when that run is not complete, it is run first (`snakemake --cores 2`, about 9 minutes). A
benchmark not run this time and without a JSON file keeps its section of the earlier RESULTS.md,
marked with when and where it was measured.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
TRAINED = "resources/zoo/qwen2vl_guide/samples-96000"

# name -> the command line after `python benchmarks/<name>.py`
BENCHMARKS: dict[str, list[str]] = {
    "inference_throughput": ["--questions", "128"],
    "resume_loss": [],
    "workflow_overhead": [],
    "pipeline_overhead": [],
    "train_throughput": [
        "--model",
        "resources/models/qwen2vl_guide",
        "--cache",
        "results/cache/vqav2_train.jsonl",
        "--steps",
        "30",
        "--batch-size",
        "16",
    ],  # fmt: skip
    "pretrain_throughput": [
        "--model",
        "resources/zoo/qwen2vl_guide/samples-0",
        "--cache",
        "results/cache/vqav2_train.jsonl",
        "results/cache/textvqa_train.jsonl",
        "results/cache/swap_train.jsonl",
        "--batch-size",
        "16",
    ],  # fmt: skip
    "guided_pruning": [],
    "probing_extraction": ["--model", TRAINED, "--cache", "results/cache/swap_val.jsonl"],
    "shard_throughput": ["--model", TRAINED, "--cache", "results/cache/vqav2_val.jsonl"],
    "lmms_eval_compare": ["--model", TRAINED, "--cache", "results/cache/vqav2_val.jsonl", "--questions", "128"],
}
# benchmarks that need an optional package (the `bench` extra)
NEEDS = {"train_throughput": "trl", "lmms_eval_compare": "lmms_eval"}


def snakemake(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), *args], cwd=cwd, capture_output=True, text=True
    )


def ensure_default_run(run_dir: Path) -> None:
    """Run the default workflow in `run_dir` unless a dry run says it is complete."""
    plan = snakemake("--cores", "2", "-n", cwd=run_dir)
    if "Nothing to be done" in plan.stdout + plan.stderr:
        return
    print("the default workflow is not complete here: running it (snakemake --cores 2)", flush=True)
    run = snakemake("--cores", "2", cwd=run_dir)
    if run.returncode:
        raise SystemExit(f"the default workflow failed:\n{run.stderr[-3000:]}")


def run_benchmark(name: str, args: list[str], run_dir: Path) -> str:
    """Run one benchmark; returns "ok", "skipped: ..." or "failed: ..."."""
    if name in NEEDS and importlib.util.find_spec(NEEDS[name]) is None:
        return f"skipped: needs `{NEEDS[name]}` (pip install -e '.[bench]')"
    extra = ["--out", str(RESULTS / f"{name}.json")]
    extra += ["--run-dir", str(run_dir)] if name in ("workflow_overhead", "pipeline_overhead") else []
    print(f"== {name}", flush=True)
    start = time.perf_counter()
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / f"{name}.py"), *args, *extra], cwd=run_dir,
                         capture_output=True, text=True)  # fmt: skip
    print(run.stdout.strip(), f"({time.perf_counter() - start:.0f} s)", flush=True)
    if run.returncode:
        print(run.stderr[-3000:], file=sys.stderr)
        return f"failed (exit {run.returncode}): {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else ''}"
    return "ok"


def machine() -> list[str]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in
                         ("torch", "transformers", "peft", "snakemake", "polars"))  # fmt: skip
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    except FileNotFoundError:  # no git on this machine
        commit = ""
    return [
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; vlmflow commit `{commit or 'unknown'}`",
        f"- CPU: {cpu}, {os.cpu_count()} cores; memory {memory:.0f} GiB; GPU: {gpu}",
        f"- Python {platform.python_version()}; {versions}",
    ]


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def with_gpu_run(r: dict, name: str) -> list[dict]:
    """This run's result, and beside it `<name>_cuda.json`, a GPU run made elsewhere, if any and
    on another device."""
    gpu = load(f"{name}_cuda")
    return [r] + ([gpu] if gpu is not None and gpu["device"] != r["device"] else [])


def mark(met: bool) -> str:
    return "met" if met else "**missed**"


def section_inference(r: dict) -> list[str]:
    base = r["per_sample"]["samples_per_s"]
    lines = [
        f"Model `{r['model']}` on {r['device']}, {r['questions']} questions, {r['max_new_tokens']} new tokens, "
        f"median of {r['repeats']}. Baseline: a per-sample `model.generate` loop (the seeds', VLMEvalKit's).",
        "",
        "| engine | batch size | samples/s | ratio | predictions identical |",
        "| --- | --- | --- | --- | --- |",
        f"| per-sample `generate` loop | 1 | {base:.1f} | 1.00x | reference |",
    ]
    for row in r["batched"]:
        same = "yes" if not row["mismatches"] else f"no ({row['mismatches']} differ)"
        lines.append(
            f"| vlmflow `run_inference` | {row['batch_size']} | {row['samples_per_s']:.1f} | {row['ratio']:.2f}x | {same} |"
        )
    target = 8 if "cuda" in r["device"] else 3
    best = max(row["ratio"] for row in r["batched"])
    lines += ["", f"Target: batched at least {target}x the per-sample loop ({'GPU' if target == 8 else 'CPU'}): "
              f"best {best:.2f}x, {mark(best >= target)}."]  # fmt: skip
    return lines


def section_workflow(r: dict) -> list[str]:
    noop, first = r["no_op_rerun"], r["first_job"]
    lines = [
        f"Snakemake {r['snakemake']}; medians of {len(noop['runs'])} runs.",
        "",
        "| measurement | seconds | target |",
        "| --- | --- | --- |",
        f"| no-op re-run of the default target (`snakemake --cores 2`, nothing to do) | {noop['seconds']:.2f} | "
        f"3 s: {mark(noop['seconds'] <= 3)} |",
    ]
    for dry in r["dry_runs"]:
        target = f"60 s: {mark(dry['seconds'] <= 60)}" if dry["experiments"] >= 10000 else ""
        lines.append(f"| dry run (`snakemake -n`), default + {dry['experiments']:,} experiments ({dry['jobs']:,} jobs) | "
                     f"{dry['seconds']:.1f} | {target} |")  # fmt: skip
    lines.append(f"| start to first job (fresh copy, `snakemake --cores 2`) | {first['seconds']:.2f} | |")
    return lines


def section_resume(r: dict) -> list[str]:
    lines = [
        f"Model `{r['model']}`, {r['questions']} questions, batch {r['batch_size']}, chunks of {r['chunk_batches']} "
        f"batches ({r['chunk_size']} samples); the job is killed (SIGKILL) at {len(r['trials'])} random points and "
        "restarted. Lost = samples generated before the kill and generated again after the restart.",
        "",
        "| kill after batch | generated | resumed | lost | lost chunks | final file identical |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for t in r["trials"]:
        lines.append(f"| {t['kill_after_batches']} | {t['generated']} | {t['resumed']} | {t['lost']} | "
                     f"{t['lost_chunks']:.2f} | {'yes' if t['identical'] else 'no'} |")  # fmt: skip
    lines += ["", f"Median lost {r['median_lost']} samples ({r['median_lost_chunks']:.2f} chunks), max {r['max_lost']}. "
              f"Target: at most one chunk per kill: {mark(r['met'])}."]  # fmt: skip
    return lines


def section_pipeline(r: dict) -> list[str]:
    lines = [
        f"A run of the default from scratch ({r['jobs']} jobs, `--cores {r['cores']}`): wall {r['wall_s']:.0f} s, "
        f"job time {r['job_s']:.0f} s (cores busy {r['core_occupancy']:.0%} of the wall time), of which in model "
        f"passes {r['model_s']:.0f} s by the engine's own clock. Overhead (job time outside model passes): "
        f"**{r['overhead_share']:.1%}** of all job time, {r['overhead_share_model_jobs']:.1%} of the time of the jobs "
        f"that run a model. Target under 10%: {mark(r['overhead_share'] < 0.10)}.",
        "",
        f"A fresh interpreter takes {r['startup_s']:.2f} s to import what a model job imports (torch, torchvision, "
        f"transformers' model classes, vlmflow); {r['model_jobs']} jobs ran a model, so {r['model_jobs'] * r['startup_s']:.0f} s "
        f"of the overhead is that start-up. Without it the overhead would be {r['overhead_share_after_startup']:.1%}. "
        "Job times come from the log to the second, except for rules with a `benchmark:` file. The conditioning "
        "study's jobs keep no forward clock, so all their time counts as overhead here."
        + (
            f" Measured in the run itself, {r['start_s']:.0f} s of the job time ({r['start_s'] / r['job_s']:.0%}) passed "
            "between Snakemake starting a job and its script's first log line."
            if "start_s" in r
            else ""
        ),
        "",
        "| rule | jobs | job s | model s | overhead |",
        "| --- | --- | --- | --- | --- |",
    ]
    for rule, e in r["per_rule"].items():
        share = f"{e['overhead_share']:.0%}" if e["overhead_share"] is not None else ""
        lines.append(f"| {rule} | {e['jobs']} | {e['job_s']:.1f} | {e['model_s']:.1f} | {share} |")
    return lines


def section_train(r: dict) -> list[str]:
    return [f"`{r['model']}`, {r['mode']} fine-tune, batch {r['batch_size']}, {r['timed_steps']} timed steps on "
            f"{r['device']}: vlmflow {r['vlmflow_samples_per_s']:.1f} samples/s, TRL `SFTTrainer` "
            f"{r['trl_sft_samples_per_s']:.1f} samples/s, ratio {r['ratio_vlmflow_over_trl']:.2f}x."]  # fmt: skip


def section_pretrain(r: dict) -> list[str]:
    lines = [
        "Each row: the same checkpoint, records and settings trained twice in one run, with the M-RoPE positions "
        "built per sample inside the forward (and pageable batches) and with them computed by the loader workers "
        "(and pinned batches on a GPU); median samples/s after the warm-up steps. A GPU run made elsewhere "
        "(`--out benchmarks/results/pretrain_throughput_cuda.json`) goes beside it.",
        "",
        "| model, device | batch | positions in the forward | positions with the batch | speed-up | same last loss |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for run in with_gpu_run(r, "pretrain_throughput"):
        for row in run["runs"]:
            same = "yes" if row["last_loss_forward"] == row["last_loss_batch"] else "**no**"
            lines.append(f"| `{row['model']}` on {run['device']}, {run['loader_workers']} loader workers, "
                         f"{run['steps']} steps | {row['batch_size']} | {row['forward_samples_per_s']:.1f} | "
                         f"{row['batch_samples_per_s']:.1f} | {row['ratio']:.2f}x | {same} |")  # fmt: skip
    return lines


def section_guided(r: dict) -> list[str]:
    lines = [f"Decode model hidden {r['decode']['hidden']}, {r['decode']['layers']} layers, {r['decode']['visual_tokens']} "
             f"visual tokens; prefill of {r['prefill_batch']} prompts on {r['device']}.", "",
             "| keep | prefill ms | speed-up | KV cache MiB | peak MiB |", "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for p in r["prefill"]:
        lines.append(f"| {p['keep_ratio']} | {p['prefill_ms']:.1f} | {p['prefill_speedup']:.2f}x | "
                     f"{p['kv_cache_mib']:.2f} | {p['peak_mib']:.1f} |")  # fmt: skip
    g = r["guided_keep_0.09"]
    lines += ["", f"Whole guided pipeline at keep 0.09: batch {g['batch_size']} {g['batched_samples_per_s']:.2f} "
              f"questions/s, batch 1 {g['batch1_samples_per_s']:.2f}, ratio {g['ratio']:.2f}x, answers identical: "
              f"{g['answers_identical']}."]  # fmt: skip
    return lines


def section_probing(r: dict) -> list[str]:
    return [f"`{r['model']}` ({r['layers']} layers), {r['questions']} swap-pair questions on {r['device']}: one batched "
            f"prefill with hooks {r['batched_prefill_samples_per_s']:.1f} questions/s, the seed's generate-with-hooks "
            f"{r['seed_generate_with_hooks_samples_per_s']:.1f} questions/s, ratio {r['ratio']:.2f}x; features equal to "
            f"{r['max_abs_difference']:.1e}."]  # fmt: skip


def section_shards(r: dict) -> list[str]:
    lines = [
        "The same questions answered by one job, and by shards started together then gathered. Each job is a fresh "
        "process (imports, model load, inference), as Snakemake starts it; timed from launch to the published "
        "predictions file (for the shards: after `gather_jsonl`), medians of interleaved repeats. A GPU row's model is "
        "`benchmarks/gpu_setup.py`'s: Qwen2-VL-2B's architecture and sizes with random weights (no hub offline), so "
        "every question generates all its new tokens.",
        "",
        "| model, device | run | questions/s | wall s | questions/s inside `run_inference` | model load s | speed-up "
        "| gathered file identical |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    # A GPU run made elsewhere (`--device cuda --out benchmarks/results/shard_throughput_cuda.json`) goes beside it.
    for run in with_gpu_run(r, "shard_throughput"):
        one, many = run["one_process"], run["sharded"]
        lines += [
            f"| `{run['model']}` on {run['device']}: {run['questions']} questions, batch {run['batch_size']}, "
            f"{run['max_new_tokens']} new tokens, {run['repeats']} repeats | 1 process | {one['questions_per_s']:.1f} | "
            f"{one['wall_s']:.2f} | {one['inference_questions_per_s']:.1f} | {one['load_s']:.2f} | 1.00x | reference |",
            f"| {run['placement']} | {run['shards']} shards + gather | {many['questions_per_s']:.1f} | "
            f"{many['wall_s']:.2f} | {many['inference_questions_per_s']:.1f} | {many['load_s']:.2f} | "
            f"{run['speedup']:.2f}x ({run['inference_speedup']:.2f}x inside) | {'yes' if run['identical'] else '**no**'} |",
        ]
    return lines


def section_lmms(r: dict) -> list[str]:
    v = r["vlmflow"]
    lines = [
        f"`{r['model']}` on {r['device']}, {r['questions']} questions, {r['max_new_tokens']} new tokens, greedy, median "
        f"of {r['repeats']}; lmms-eval {r['lmms_eval']} (`{r['lmms_eval_model']}`) on a local task over the same "
        f"questions. Each run loads the checkpoint (lmms-eval frees it after every evaluation). Prompts identical: "
        f"{'yes' if r['prompts_identical'] else '**no**'}; dtypes {r['dtypes']['vlmflow']} (vlmflow) and "
        f"{r['dtypes']['lmms_eval']} (lmms-eval); padding {r['padding_side']['vlmflow']} (vlmflow) and "
        f"{r['padding_side']['lmms_eval']} (lmms-eval).",
        "",
        "| engine | batch size | questions/s | vlmflow / engine | answers differing | differing, same pixels |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| vlmflow `run_inference` | {v['batch_size']} | {v['questions_per_s']:.1f} | 1.00x | reference | reference |",
    ]
    for row in r["lmms_eval_runs"]:
        lines.append(f"| lmms-eval `simple_evaluate` | {row['batch_size']} | {row['questions_per_s']:.1f} | "
                     f"{row['ratio_vlmflow_over_lmms_eval']:.2f}x | {row['differing']} | {row['differing_same_pixels']} |")  # fmt: skip
    examples = [f"{e['question_id']} vlmflow {e['vlmflow']!r}, lmms-eval {e['lmms_eval']!r} (batch {row['batch_size']})"
                for row in r["lmms_eval_runs"] for e in row["examples"]][:3]  # fmt: skip
    lines += ["", "Same pixels: against vlmflow fed the JPEG bytes lmms-eval makes of each image. What differs:", "",
              *[f"- {d}" for d in r["differences"]]]  # fmt: skip
    lines += ["", f"Differing answers, e.g.: {'; '.join(examples)}."] if examples else []
    return lines


SECTIONS = {
    "inference_throughput": ("Inference throughput: batched engine vs per-sample generate", section_inference),
    "workflow_overhead": ("Workflow overhead", section_workflow),
    "resume_loss": ("Resume: work lost per kill", section_resume),
    "pipeline_overhead": ("Pipeline overhead in the default run", section_pipeline),
    "train_throughput": ("Training throughput: vlmflow vs TRL", section_train),
    "pretrain_throughput": ("Pretraining throughput: M-RoPE positions with the batch", section_pretrain),
    "guided_pruning": ("Guided pruning: prefill and batched pipeline", section_guided),
    "probing_extraction": ("Probing: one-prefill hooks vs generate-with-hooks", section_probing),
    "shard_throughput": ("Sharded inference: one process vs concurrent shards", section_shards),
    "lmms_eval_compare": ("vlmflow vs lmms-eval: throughput and answers", section_lmms),
}
KEPT = "as in the earlier RESULTS.md"  # the status of a section kept from the file being rewritten


def earlier_sections(path: Path) -> dict[str, list[str]]:
    """The sections with figures of an earlier RESULTS.md, by title; each one's status line says
    when and where it was measured (the file's machine lines, unless it was kept there already)."""
    if not path.is_file():
        return {}
    head, *parts = path.read_text().split("\n## ")
    where = "; ".join(line[2:] for line in head.splitlines() if line.startswith("- "))
    sections = {}
    for title, _, body in (part.partition("\n") for part in parts):
        lines = body.strip("\n").splitlines()
        if lines and "No result from this run." not in lines:
            lines[0] = lines[0] if f"({KEPT}" in lines[0] else re.sub(r"\([^()]*\)$", f"({KEPT}: {where})", lines[0])
            sections[title] = lines
    return sections


def write_results(statuses: dict[str, str], out: Path) -> None:
    """RESULTS.md from the JSON files of the benchmarks run (or kept); a benchmark not run now and
    without a JSON file keeps its section of the earlier RESULTS.md, saying when it was measured."""
    earlier = earlier_sections(out)
    sections: list[str] = []
    for name, (title, render) in SECTIONS.items():
        status = statuses.get(name, "not run")
        result = load(name) if status in ("ok", "kept from an earlier run") else None
        if result is None and status == "not run" and title in earlier:
            sections += ["", f"## {title}", "", *earlier[title]]
            continue
        sections += ["", f"## {title}", "", f"`python benchmarks/{name}.py` ({status})", ""]
        sections += render(result) if result else ["No result from this run."]
    kept = f" ({KEPT}" in "\n".join(sections)
    lines = ["# vlmflow benchmarks", "", "Written by `python benchmarks/run_all.py`; every figure below comes from the JSON "
             "files in `benchmarks/results/` of that run" + (f', except in the sections marked "{KEPT}" (measured '
             "when and where they say)" if kept else "") + ".", "", *machine(), *sections]  # fmt: skip
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, default=REPO, help="where the default workflow has run (or will)")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run these benchmarks alone")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    parser.add_argument("--render-only", action="store_true",
                        help="run nothing: rewrite RESULTS.md from the JSON files in benchmarks/results/")  # fmt: skip
    args = parser.parse_args()
    if args.render_only:
        write_results({name: "kept from an earlier run" for name in BENCHMARKS if load(name)}, args.out)
        print(f"wrote {args.out}")
        return
    ensure_default_run(args.run_dir)
    chosen = args.only or list(BENCHMARKS)
    statuses = {name: run_benchmark(name, BENCHMARKS[name], args.run_dir) for name in chosen}
    statuses |= {name: "kept from an earlier run" for name in BENCHMARKS if name not in chosen and load(name)}
    write_results(statuses, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
