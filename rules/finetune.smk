# Fine-tuning (seed 002): label check -> sanity overfit gate -> training to each configured scale
# (step count). Each scale is a job that continues from the previous one; the last is the trained
# model, evaluated by the VQA stages beside its base model (trained_vqa_experiments).


include: "functions/finetune.smk"


rule label_check:
    input:
        unpack(finetune_inputs),
    output:
        labels="results/finetune/{experiment}/label_check.jsonl",
    params:
        generation=train_generation,
        samples=16,
    wildcard_constraints:
        experiment=one_of(finetune_experiments()),
    log:
        "logs/finetune/{experiment}/label_check.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/finetune/label_check.py"


rule sanity_overfit:
    input:
        unpack(finetune_inputs),
        labels="results/finetune/{experiment}/label_check.jsonl",
    output:
        report="results/finetune/{experiment}/sanity.json",
    params:
        settings=train_settings,
        generation=train_generation,
        sanity=setting(finetune_spec, "sanity"),
        device=setting(finetune_spec, "device"),
    wildcard_constraints:
        experiment=one_of(finetune_experiments()),
    threads: 2
    retries: GPU_RETRIES
    resources:
        **GPU_RESOURCES,
    log:
        "logs/finetune/{experiment}/sanity.log",
    benchmark:
        "results/benchmarks/sanity_overfit/{experiment}.tsv"
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/finetune/sanity_overfit.py"


rule train_model:
    input:
        unpack(finetune_stage_inputs),
    output:
        checkpoint=directory("results/finetune/{experiment}/step-{step}"),
    params:
        settings=train_settings,
        generation=train_generation,
        device=setting(finetune_spec, "device"),
        run_dir=run_dir,
        wandb=setting(finetune_spec, "wandb"),
    wildcard_constraints:
        experiment=one_of(finetune_experiments()),
        step=r"\d+",
    priority: 10  # the long pole: training starts before the shorter jobs that are also ready
    threads: setting(finetune_spec, "threads")
    retries: GPU_RETRIES
    resources:
        **GPU_RESOURCES,
    log:
        "logs/finetune/{experiment}/step-{step}.log",
    benchmark:
        "results/benchmarks/train_model/{experiment}_step-{step}.tsv"
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/finetune/train.py"


rule plot_training:
    input:
        checkpoint=trained_model,
    output:
        plot=report(
            "results/finetune/{experiment}/loss.png",
            caption="../workflow/report/training_curve.rst",
            category="Fine-tuning",
        ),
    wildcard_constraints:
        experiment=one_of(finetune_experiments()),
    log:
        "logs/finetune/{experiment}/plot.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/finetune/plot_curves.py"
