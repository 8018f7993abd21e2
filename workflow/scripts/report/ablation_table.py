"""Glue for rule ablation_table: the experiments' metrics side by side, as CSV and markdown."""

from vlmflow.core.scripting import log_to
from vlmflow.report.ablations import ablation_frame, write_ablation

log = log_to(snakemake.log[0])
frame = ablation_frame(snakemake.params.experiments, snakemake.params.settings, snakemake.input.metrics)
write_ablation(frame, snakemake.params.title, snakemake.output.csv, snakemake.output.markdown)
log.info("%s: %d experiments", snakemake.params.title, frame.height)
