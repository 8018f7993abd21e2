"""Glue for rule analyse_swap_scale: one scale's metrics in the seed's layout, and its PCA plots."""

import numpy as np

from vlmflow.core.scripting import log_to
from vlmflow.probing.analysis import analyse_scale, write_scale
from vlmflow.probing.plots import plot_pca

log = log_to(snakemake.log[0])
scale, experiment = snakemake.wildcards.scale, snakemake.wildcards.experiment
with np.load(snakemake.input.vectors) as vectors, np.load(snakemake.input.cross) as cross:
    arrays, quads = dict(vectors), dict(cross)
result = analyse_scale(
    arrays, quads, snakemake.params.permutations, snakemake.params.seed, snakemake.params.reliable_threshold
)
write_scale(result, scale, snakemake.params.out_dir)
for dims, path in ((2, snakemake.output.pca), (3, snakemake.output.pca_3d)):
    plot_pca(arrays, f"{experiment} {scale}: swap-pair deltas", path, dims)
log.info(
    "%s: %d pairs, %d quads; pred_stats %s",
    scale,
    len(arrays["pair_id"]),
    len(quads["pair_id"]),
    result["pred_stats"]["all"],
)
