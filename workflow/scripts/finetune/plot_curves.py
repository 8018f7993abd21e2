"""Glue for rule plot_training: the training curve of one experiment."""

from pathlib import Path

from vlmflow.core.scripting import log_to
from vlmflow.finetune.plots import plot_training_log

log = log_to(snakemake.log[0])
plot_training_log(
    Path(snakemake.input.checkpoint) / "train_log.jsonl", snakemake.output.plot, snakemake.wildcards.experiment
)
