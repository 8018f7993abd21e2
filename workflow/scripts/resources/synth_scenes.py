"""Glue for rule synth_captioned_scenes: one split of the captioned scenes (an imagefolder)."""

from vlmflow.core.scripting import log_to
from vlmflow.synth.captioned_scenes import write_captioned_scenes

log = log_to(snakemake.log[0])
p = snakemake.params
write_captioned_scenes(snakemake.output.scenes, p.n, seed=p.seed, split=snakemake.wildcards.split, size=p.image_size)
log.info("wrote %d captioned scenes of split %s", p.n, snakemake.wildcards.split)
