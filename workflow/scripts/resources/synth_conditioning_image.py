"""Glue for rule synth_conditioning_image: the reference picture of the VL-conditioning study."""

from vlmflow.core.io import atomic_write
from vlmflow.core.scripting import log_to
from vlmflow.synth.captioned_scenes import REFERENCE_SCENE, caption, draw_scene

log = log_to(snakemake.log[0])
with atomic_write(snakemake.output.image, "wb") as handle:
    draw_scene(REFERENCE_SCENE, size=128).save(handle, format="PNG")
log.info("wrote %s: %s", snakemake.output.image, caption(REFERENCE_SCENE))
