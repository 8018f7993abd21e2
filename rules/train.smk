# Fine-tuning: label check -> sanity overfit gate -> training to each configured scale (step
# count). Each scale is a job that continues from the previous one; the last is the trained model,
# evaluated by the VQA stages beside its base model (see trained_vqa_experiments in common.smk).


rule label_check:
    input:
        unpack(train_inputs),
    output:
        labels="results/train/{experiment}/label_check.jsonl",
    params:
        generation=lambda wildcards: train_generation(wildcards.experiment),
        samples=16,
    wildcard_constraints:
        experiment=one_of(train_experiments()),
    log:
        "logs/train/{experiment}/label_check.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/label_check.py"


rule sanity_overfit:
    input:
        unpack(train_inputs),
        labels="results/train/{experiment}/label_check.jsonl",
    output:
        report="results/train/{experiment}/sanity.json",
    params:
        settings=lambda wildcards: train_settings(wildcards.experiment),
        generation=lambda wildcards: train_generation(wildcards.experiment),
        sanity=lambda wildcards: train_spec(wildcards.experiment)["sanity"],
        device=lambda wildcards: train_spec(wildcards.experiment)["device"],
    wildcard_constraints:
        experiment=one_of(train_experiments()),
    threads: 2
    retries: GPU_RETRIES
    resources:
        gpu=1,
        batch_divisor=oom_batch_divisor,
        mem_mb=16000,
        runtime=60,
    log:
        "logs/train/{experiment}/sanity.log",
    benchmark:
        "results/benchmarks/sanity_overfit/{experiment}.tsv"
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/sanity_overfit.py"


rule train_model:
    input:
        unpack(train_stage_inputs),
    output:
        checkpoint=directory("results/train/{experiment}/step-{step}"),
    params:
        settings=lambda wildcards: train_settings(wildcards.experiment),
        generation=lambda wildcards: train_generation(wildcards.experiment),
        device=lambda wildcards: train_spec(wildcards.experiment)["device"],
        run_dir=lambda wildcards: f"results/train/{wildcards.experiment}/run",
        wandb=lambda wildcards: train_spec(wildcards.experiment)["wandb"],
    wildcard_constraints:
        experiment=one_of(train_experiments()),
        step=r"\d+",
    priority: 10  # the long pole: training starts before the shorter jobs that are also ready
    threads: lambda wildcards: train_spec(wildcards.experiment)["threads"]
    retries: GPU_RETRIES
    resources:
        gpu=1,
        batch_divisor=oom_batch_divisor,
        mem_mb=32000,
        runtime=720,
    log:
        "logs/train/{experiment}/step-{step}.log",
    benchmark:
        "results/benchmarks/train_model/{experiment}_step-{step}.tsv"
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/train_model.py"


rule plot_training:
    input:
        checkpoint=lambda wildcards: trained_model_path(wildcards.experiment),
    output:
        plot=report(
            "results/train/{experiment}/loss.png",
            caption="../workflow/report/training_curve.rst",
            category="Fine-tuning",
        ),
    wildcard_constraints:
        experiment=one_of(train_experiments()),
    log:
        "logs/train/{experiment}/plot.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/plot_training.py"
