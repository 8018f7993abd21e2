"""Glue for rule synth_conditioning_image: the reference image of the VL-conditioning study."""

from vlmflow.core.io import atomic_write
from vlmflow.core.scripting import log_to
from vlmflow.synth.reference_image import cartoon_house

log = log_to(snakemake.log[0])
with atomic_write(snakemake.output.image, "wb") as handle:
    cartoon_house().save(handle, format="PNG")
log.info("wrote %s", snakemake.output.image)
