"""Glue for rule build_foveated_model: the tiny DINOv2 and Llama parts of a foveated VLM."""

from vlmflow.core.scripting import log_to
from vlmflow.synth.videos import corpus_lines
from vlmflow.zoo.foveated import build_foveated_parts

log = log_to(snakemake.log[0])
build_foveated_parts(snakemake.params.spec, corpus_lines(), snakemake.output.parts)
log.info("built %s in %s", snakemake.wildcards.model, snakemake.output.parts)
