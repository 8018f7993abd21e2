"""Glue for rule build_model: a tiny checkpoint of a real architecture, saved like a hub model."""

from pathlib import Path

from vlmflow.core.scripting import log_to
from vlmflow.zoo.build import build_checkpoint

log = log_to(snakemake.log[0])
lines = Path(snakemake.input.corpus).read_text(encoding="utf-8").splitlines()
build_checkpoint(snakemake.params.spec, lines, snakemake.output.checkpoint)
log.info("built %s (%s) in %s", snakemake.wildcards.model, snakemake.params.spec["family"], snakemake.output.checkpoint)
