"""Glue for rule export_zoo_weights: one scale's weights in the zoo's dtype, without training state."""

from vlmflow.core.scripting import log_to
from vlmflow.pretrain.zoo import export_weights

log = log_to(snakemake.log[0])
export_weights(snakemake.input.checkpoint, snakemake.output.weights, snakemake.params.dtype)
log.info("exported %s as %s to %s", snakemake.input.checkpoint, snakemake.params.dtype, snakemake.output.weights)
