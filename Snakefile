# vlmflow: vision-language-model experiments as cached, resumable Snakemake stages.
#
#   snakemake results/summary.csv --cores 8 --resources gpu=2
#
# One rule file per family, each holding its input functions and settings beside its rules:
# resources (synthetic data, tiny model zoo) -> data (cache to JSONL) -> finetune (LoRA / full
# fine-tuning) -> pretrain (the shipped zoo, `snakemake pretrain`) -> vqa (batched, resumable
# inference and evaluation) -> guided (guided visual-token pruning) -> probing (hidden states of
# swap pairs across checkpoints) -> foveated (the foveated-VLM sweeps) -> conditioning (VLM hidden
# states as a diffusion transformer's text conditioning) -> report (summary.csv, ablations). Each
# family file checks its own config section as it is read.

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "rules/common.smk"
include: "rules/resources.smk"
include: "rules/data.smk"
include: "rules/finetune.smk"
include: "rules/pretrain.smk"
include: "rules/vqa.smk"
include: "rules/guided.smk"
include: "rules/probing.smk"
include: "rules/foveated.smk"
include: "rules/conditioning.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        "results/summary.csv",
        ablation_tables(),
        finetune_outputs(),
        zoo_figures(),
        guided_outputs(),
        probing_outputs(),
        foveated_outputs(),
        conditioning_outputs(),
