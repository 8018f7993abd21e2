# Fine-tuning (seed 002): label check -> sanity overfit gate -> training to each configured scale
# (step count). Each scale is a job that continues from the previous one; the last is the trained
# model, evaluated by the VQA stages beside its base model (trained_vqa_experiments).


include: "functions/finetune.smk"


rule label_check:
    input:
        unpack(finetune_inputs),
    output:
        labels="results/finetune/{experiment}/label_check.jsonl",
    log:
        "logs/finetune/{experiment}/label_check.log",
    wildcard_constraints:
        experiment=one_of(finetune_experiments()),
    conda:
        "../envs/vlmflow.yaml"
    params:
        generation=train_generation,
        samples=16,
    script:
        "../workflow/scripts/finetune/label_check.py"


rule sanity_overfit:
    input:
        unpack(finetune_inputs),
        labels="results/finetune/{experiment}/label_check.jsonl",
    output:
        report="results/finetune/{experiment}/sanity.json",
    log:
        "logs/finetune/{experiment}/sanity.log",
    benchmark:
        "results/benchmarks/sanity_overfit/{experiment}.tsv"
    wildcard_constraints:
        experiment=one_of(finetune_experiments()),
    conda:
        "../envs/vlmflow.yaml"
    threads: setting(finetune_spec, "threads")
    resources:
        **GPU_RESOURCES,
    params:
        settings=train_settings,
        generation=train_generation,
        sanity=setting(finetune_spec, "sanity"),
        device=setting(finetune_spec, "device"),
    script:
        "../workflow/scripts/finetune/sanity_overfit.py"


rule train_model:
    input:
        unpack(finetune_stage_inputs),
    output:
        checkpoint=directory("results/finetune/{experiment}/step-{step}"),
    log:
        "logs/finetune/{experiment}/step-{step}.log",
    benchmark:
        "results/benchmarks/train_model/{experiment}_step-{step}.tsv"
    wildcard_constraints:
        experiment=one_of(finetune_experiments()),
        step=r"\d+",
    priority: PRIORITY_TRAIN
    conda:
        "../envs/vlmflow.yaml"
    threads: train_threads
    resources:
        **gpu_resources(train_gpus),  # gpus: N -> N data-parallel processes inside this one job
    params:
        settings=train_settings,
        generation=train_generation,
        device=setting(finetune_spec, "device"),
        run_dir=run_dir,
        wandb=setting(finetune_spec, "wandb"),
        gpus=train_gpus,
        loader_workers=setting(finetune_spec, "loader_workers"),
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
    log:
        "logs/finetune/{experiment}/plot.log",
    wildcard_constraints:
        experiment=one_of(finetune_experiments()),
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/finetune/plot_curves.py"
