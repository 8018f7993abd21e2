# Foveated VLM (seed 001): each configured run trains from the same DINOv2 + causal-LM parts on the
# same seeded sample budget and, in the same job, its saved model is evaluated in its modes
# (coarse_only, coarse_fine, autoregressive, blank_frames); the sweeps compare runs. The LR sweep
# waits on the freeze sweep's decision (a checkpoint): when connector-only training (F1) wins, its
# runs are never scheduled.


include: "functions/foveated.smk"


rule build_foveated_model:
    output:
        parts=directory("resources/models/{model}"),
    log:
        "logs/build_model/{model}.log",
    wildcard_constraints:
        model=one_of(foveated_built_models()),
    priority: PRIORITY_PREPARE
    conda:
        "../envs/vlmflow.yaml"
    params:
        spec=foveated_build_spec,
    script:
        "../workflow/scripts/foveated/build_model.py"


rule train_foveated:
    input:
        unpack(foveated_train_inputs),
    output:
        model=directory("results/foveated/{run}/model"),
        log="results/foveated/{run}/log.jsonl",
        evals="results/foveated/{run}/evals.jsonl",
        attention=directory("results/foveated/{run}/attention"),
        evaluation="results/foveated/{run}/eval.json",
    log:
        "logs/foveated/{run}/train.log",
    benchmark:
        "results/benchmarks/train_foveated/{run}.tsv"
    wildcard_constraints:
        run=one_of(foveated_runs()),
    priority: foveated_priority
    conda:
        "../envs/vlmflow.yaml"
    threads: foveated_train_threads
    resources:
        **gpu_resources(foveated_gpus),  # gpus: N -> N data-parallel processes inside this one job
    params:
        settings=foveated_settings,
        parts=foveated_parts,
        device=setting(foveated_spec, "device", wildcard="run"),
        state="results/foveated/{run}/state",
        gpus=foveated_gpus,
    script:
        "../workflow/scripts/foveated/train.py"


checkpoint decide_foveated_sweep:
    input:
        evals=sweep_evals,
    output:
        decision="results/foveated/sweeps/{sweep}/decision.json",
    log:
        "logs/foveated/sweeps/{sweep}/decide.log",
    wildcard_constraints:
        sweep=one_of(foveated_sweeps()),
    conda:
        "../envs/vlmflow.yaml"
    params:
        runs=sweep_runs,
        metric=sweep_metric,
    script:
        "../workflow/scripts/foveated/decide_sweep.py"


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
    log:
        "logs/foveated/sweeps/{sweep}/report.log",
    wildcard_constraints:
        sweep=one_of(foveated_sweeps()),
    conda:
        "../envs/vlmflow.yaml"
    params:
        runs=sweep_runs,
        metric=sweep_metric,
        skipped=sweep_skipped,
        skip_when=sweep_skip_when,
    script:
        "../workflow/scripts/foveated/sweep_report.py"


rule foveated_report:
    input:
        unpack(foveated_report_inputs),
    output:
        figures=report(
            multiext(
                "results/foveated/plots/",
                "loss_ratio.png",
                "attention_entropy.png",
                "token_frontier.png",
                "three_modes.png",
                "attention_heatmaps.png",
            ),
            caption="../workflow/report/foveated.rst",
            category="Foveated VLM",
            subcategory="Figures",
        ),
        summary="results/foveated/summary.csv",
    log:
        "logs/foveated/report.log",
    conda:
        "../envs/vlmflow.yaml"
    params:
        runs=active_foveated_runs,
        specs=active_run_specs,
        sweeps=foveated_sweeps(),
        skipped=skipped_sweeps,
    script:
        "../workflow/scripts/foveated/report.py"
