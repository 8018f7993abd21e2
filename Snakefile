# vlmflow: vision-language-model experiments as cached, resumable Snakemake stages.
#
#   snakemake results/summary.csv --cores 8 --resources gpu=2
#
# Stages (one rule file each): resources (synthetic data, tiny model zoo) -> data (cache to
# JSONL) -> train (LoRA / full fine-tuning) -> infer (batched, resumable generation) -> evaluate
# (VQA accuracy) -> prune (guided visual-token pruning) -> probe (hidden states of swap pairs
# across checkpoints) -> foveated (the foveated-VLM sweeps) -> conditioning (VLM hidden states as a
# diffusion transformer's text conditioning) -> report (summary).

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "rules/common.smk"
include: "rules/resources.smk"
include: "rules/data.smk"
include: "rules/infer.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/prune.smk"
include: "rules/probe.smk"
include: "rules/foveated.smk"
include: "rules/conditioning.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        "results/summary.csv",
        ablation_tables(),
        expand("results/train/{experiment}/loss.png", experiment=train_experiments()),
        expand("results/train/{experiment}/label_check.jsonl", experiment=train_experiments()),
        guided_outputs(),
        probing_outputs(),
        foveated_outputs(),
        conditioning_outputs(),
