# Foveated VLM (seed 001): each configured run trains from the same DINOv2 + causal-LM parts on the
# same seeded sample budget, is evaluated in its modes (coarse_only, coarse_fine, autoregressive),
# and the sweeps compare runs. The LR sweep waits on the freeze sweep's decision (a checkpoint):
# when connector-only training (F1) wins, its runs are never scheduled.


rule train_foveated:
    input:
        unpack(foveated_train_inputs),
    output:
        model=directory("results/foveated/{run}/model"),
        log="results/foveated/{run}/log.jsonl",
        evals="results/foveated/{run}/evals.jsonl",
        attention=directory("results/foveated/{run}/attention"),
    params:
        settings=lambda wildcards: foveated_settings(wildcards.run),
        parts=lambda wildcards: foveated_parts(wildcards.run),
        device=lambda wildcards: foveated_spec(wildcards.run)["device"],
        state="results/foveated/{run}/state",
    wildcard_constraints:
        run=one_of(foveated_runs()),
    threads: lambda wildcards: foveated_spec(wildcards.run)["threads"]
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=720,
    log:
        "logs/foveated/{run}/train.log",
    benchmark:
        "results/benchmarks/train_foveated/{run}.tsv"
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/train_foveated.py"


rule evaluate_foveated:
    input:
        model="results/foveated/{run}/model",
        val=lambda wildcards: foveated()["data"][foveated_spec(wildcards.run)["data"]]["val"],
    output:
        evaluation="results/foveated/{run}/eval.json",
    params:
        settings=lambda wildcards: foveated_settings(wildcards.run),
        device=lambda wildcards: foveated_spec(wildcards.run)["device"],
    wildcard_constraints:
        run=one_of(foveated_runs()),
    threads: lambda wildcards: foveated_spec(wildcards.run)["threads"]
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=120,
    log:
        "logs/foveated/{run}/evaluate.log",
    benchmark:
        "results/benchmarks/evaluate_foveated/{run}.tsv"
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/evaluate_foveated.py"


checkpoint decide_foveated_sweep:
    input:
        evals=lambda wildcards: foveated_run_files(foveated_sweeps()[wildcards.sweep]["runs"], "evals.jsonl"),
    output:
        decision="results/foveated/sweeps/{sweep}/decision.json",
    params:
        runs=lambda wildcards: foveated_sweeps()[wildcards.sweep]["runs"],
        metric=lambda wildcards: foveated_sweep_metric(wildcards.sweep),
    wildcard_constraints:
        sweep=one_of(foveated_sweeps()),
    log:
        "logs/foveated/sweeps/{sweep}/decide.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/decide_foveated_sweep.py"


rule foveated_sweep_report:
    input:
        unpack(foveated_sweep_inputs),
    output:
        curves=report(
            "results/foveated/sweeps/{sweep}/curves.png",
            caption="../workflow/report/foveated_sweep.rst",
            category="Foveated VLM",
            subcategory="Sweeps",
        ),
        csv="results/foveated/sweeps/{sweep}/table.csv",
        markdown="results/foveated/sweeps/{sweep}/table.md",
    params:
        runs=lambda wildcards: foveated_sweeps()[wildcards.sweep]["runs"],
        metric=lambda wildcards: foveated_sweep_metric(wildcards.sweep),
        skipped=lambda wildcards: foveated_sweep_skipped(wildcards.sweep),
        skip_when=lambda wildcards: foveated_sweeps()[wildcards.sweep].get("skip_when"),
    wildcard_constraints:
        sweep=one_of(foveated_sweeps()),
    log:
        "logs/foveated/sweeps/{sweep}/report.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/foveated_sweep_report.py"


rule foveated_report:
    input:
        unpack(foveated_report_inputs),
    output:
        figures=report(
            multiext("results/foveated/plots/", "loss_ratio.png", "attention_entropy.png", "token_frontier.png", "three_modes.png", "attention_heatmaps.png"),
            caption="../workflow/report/foveated.rst",
            category="Foveated VLM",
            subcategory="Figures",
        ),
        summary="results/foveated/summary.csv",
    params:
        runs=lambda wildcards: foveated_active_runs(),
        specs=lambda wildcards: {run: {k: foveated_spec(run)[k] for k in ("model", "data")} for run in foveated_active_runs()},
        sweeps=foveated_sweeps(),
        skipped=lambda wildcards: sorted(foveated_skipped()),
    log:
        "logs/foveated/report.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/foveated_report.py"
