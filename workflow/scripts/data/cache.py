"""Glue for rules cache_*: one dataset in its upstream format -> results/cache/<dataset>.jsonl."""

from pathlib import Path

from vlmflow.core.scripting import log_to
from vlmflow.data.cache import cache_dataset

log = log_to(snakemake.log[0])
name = snakemake.wildcards.dataset
datasets = snakemake.config["datasets"]
images = Path(snakemake.output.images) if "images" in snakemake.output.keys() else None
n = cache_dataset(
    name,
    datasets[name],
    Path(snakemake.output.cache),
    images,
    other_specs={other: spec for other, spec in datasets.items() if other != name},
)
log.info("cached %d records of %s to %s", n, name, snakemake.output.cache)
