"""Glue for rule plot_conditioning_pretraining: a shipped conditioning pipeline's pretraining, from its provenance."""

from vlmflow.conditioning.plots import plot_pipeline_pretraining
from vlmflow.core.io import read_json
from vlmflow.core.scripting import log_to

log = log_to(snakemake.log[0])
plot_pipeline_pretraining(read_json(snakemake.input.provenance), snakemake.output.plot)
log.info("plotted the pretraining of %s", snakemake.wildcards.model)
