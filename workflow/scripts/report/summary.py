"""Glue for rule summary: all metrics files -> results/summary.csv."""

from vlmflow.core.scripting import log_to
from vlmflow.report.summary import write_summary

log = log_to(snakemake.log[0])
frame = write_summary(snakemake.params.entries, snakemake.output.summary)
log.info("summary: %d rows from %d experiments", frame.height, len(snakemake.params.entries))
