"""Glue for rule plot_pretraining: a shipped model's pretraining, from its scales' provenance."""

from vlmflow.core.io import read_json
from vlmflow.core.scripting import log_to
from vlmflow.pretrain.plots import plot_pretraining

log = log_to(snakemake.log[0])
records = [read_json(path) for path in snakemake.input.provenance]
plot_pretraining(records, snakemake.output.plot)
log.info("plotted %d scales of %s", len(records), snakemake.wildcards.model)
