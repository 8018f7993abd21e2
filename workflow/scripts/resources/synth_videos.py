"""Glue for rule synth_shape_videos: one split of the synthetic shapes videos (JSONL + PNG frames)."""

from pathlib import Path

from vlmflow.core.scripting import log_to
from vlmflow.synth.videos import write_shape_videos

log = log_to(snakemake.log[0])
p = snakemake.params
write_shape_videos(
    Path(snakemake.output.jsonl).parent,
    snakemake.wildcards.split,
    p.n,
    seed=p.seed,
    image_size=p.image_size,
    frames=p.frames,
)
log.info("wrote %d samples of split %s", p.n, snakemake.wildcards.split)
