"""Glue for rule hybrid_checkpoint: one model's vision tower grafted onto another's language model."""

from vlmflow.core.scripting import log_to
from vlmflow.zoo.hybrid import build_hybrid

log = log_to(snakemake.log[0])
build_hybrid(snakemake.input.vision, snakemake.input.language, snakemake.output.checkpoint, snakemake.params.projector)
log.info(
    "hybrid %s: vision of %s%s, language model of %s",
    snakemake.wildcards.model,
    snakemake.input.vision,
    " (with its projector)" if snakemake.params.projector else "",
    snakemake.input.language,
)
