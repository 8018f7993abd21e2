"""Glue for rule convert_internvl_chat: a remote-code InternVL2 chat checkpoint in the native format."""

from vlmflow.core.scripting import log_to
from vlmflow.zoo.internvl_chat import convert_internvl_chat

log = log_to(snakemake.log[0])
convert_internvl_chat(snakemake.input.source, snakemake.output.checkpoint)
log.info(
    "%s: converted %s (internvl_chat, no remote code run) to the native InternVL format",
    snakemake.wildcards.model,
    snakemake.input.source,
)
