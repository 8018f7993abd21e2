# vlmflow: vision-language-model experiments as cached, resumable Snakemake stages.
#
#   snakemake results/summary.csv --cores 8 --resources gpu=2
#
# One rule file per family, each holding its input functions and settings beside its rules:
# resources (synthetic data, tiny model zoo) -> data (cache to JSONL) -> finetune (LoRA / full
# fine-tuning) -> foveated (the foveated-VLM sweeps) -> pretrain (the shipped zoo, its foveated
# parts included, `snakemake pretrain`) -> vqa (batched, resumable inference and evaluation) ->
# guided (guided visual-token pruning) -> probing (hidden states of swap pairs across checkpoints)
# -> conditioning (VLM hidden states as a diffusion transformer's text conditioning) -> report
# (summary.csv, ablations). Each family file checks its own config section as it is read.

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import min_version, validate

from vlmflow.core.config_files import invalid_config_message

min_version("9.0")


configfile: "config.yaml"


CONFIG_SCHEMA = "workflow/schemas/config.schema.yaml"
try:
    validate(config, CONFIG_SCHEMA)
except WorkflowError as error:  # name the key and the file that set it, not the whole schema
    files = [*workflow.configfiles, *workflow.overwrite_configfiles]
    raise WorkflowError(invalid_config_message(config, workflow.source_path(CONFIG_SCHEMA), files) or error) from None
for section in ("models", "datasets"):  # optional: the foveated and conditioning families name their own
    config.setdefault(section, {})
if workflow.overwrite_configfiles and not workflow.config_settings.replace_workflow_config:
    logger.warning(
        "Your --configfile extends the embedded default config.yaml: its experiments run as well. "
        "Add --replace-workflow-config to run only what your files declare (docs/configuration.md)."
    )


include: "rules/common.smk"
include: "rules/resources.smk"
include: "rules/data.smk"
include: "rules/finetune.smk"
include: "rules/foveated.smk"
include: "rules/conditioning.smk"
include: "rules/pretrain.smk"
include: "rules/vqa.smk"
include: "rules/guided.smk"
include: "rules/probing.smk"
include: "rules/report.smk"


# The summary waits for every table and figure the config declares; rule all names them again, so
# that a new experiment with a missing input stops this target too (Snakemake keeps an existing
# summary.csv whose own job cannot be planned, and reports nothing).
rule all:
    default_target: True
    input:
        "results/summary.csv",
        summary_inputs(),
        declared_outputs(),
