"""Glue for rule init_pretrain_model: a continued pretraining's step 0, its source's weights in float32."""

from vlmflow.core.scripting import log_to
from vlmflow.pretrain.zoo import export_weights

log = log_to(snakemake.log[0])
export_weights(snakemake.input.source, snakemake.output.checkpoint, "float32")
log.info("step 0 of %s: %s in float32", snakemake.wildcards.model, snakemake.input.source)
