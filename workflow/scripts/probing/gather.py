"""Glue for rule gather_swap_features: the shards' arrays as the two NPZs one extraction job writes."""

from vlmflow.core.records import read_records
from vlmflow.core.scripting import log_to
from vlmflow.probing.extraction import gather_shards, write_npz

log = log_to(snakemake.log[0])
records = read_records(snakemake.input.cache, check_images=False)
pairs, cross = gather_shards(snakemake.input.vectors, snakemake.input.vertical, records)
write_npz(snakemake.output.vectors, pairs)
write_npz(snakemake.output.cross, cross)
log.info(
    "gathered %d swap pairs and %d cross-group quads from %d shards",
    len(pairs["pair_id"]),
    len(cross["pair_id"]),
    len(snakemake.input.vectors),
)
