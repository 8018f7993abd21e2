"""Glue for rule build_conditioning_model: the tiny Z-Image pipeline and Qwen3-VL."""

from pathlib import Path

from vlmflow.core.scripting import log_to
from vlmflow.zoo.conditioning import build_conditioning_models

log = log_to(snakemake.log[0])
lines = Path(snakemake.input.corpus).read_text(encoding="utf-8").splitlines()
build_conditioning_models(snakemake.params.spec, lines, snakemake.output.parts)
log.info("built %s in %s", snakemake.wildcards.model, snakemake.output.parts)
