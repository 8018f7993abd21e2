"""Glue for rules cache_*: one dataset in its upstream format -> results/cache/<dataset>.jsonl."""

from pathlib import Path

from vlmflow.core.errors import InputError
from vlmflow.core.scripting import log_to
from vlmflow.data.cache import cache_dataset

log = log_to(snakemake.log[0])
name = snakemake.wildcards.dataset
datasets = snakemake.config["datasets"]
images = Path(snakemake.output.images) if "images" in snakemake.output.keys() else None
try:
    n = cache_dataset(
        name,
        datasets[name],
        Path(snakemake.output.cache),
        images,
        other_specs={other: spec for other, spec in datasets.items() if other != name},
    )
except InputError as err:
    # Snakemake deletes a job's outputs before it starts, so a failed re-cache has no old cache
    # to fall back on: say so, and how to get it back (docs/data.md, "Bad input").
    outputs = " and ".join(str(p) for p in (snakemake.output.cache, images) if p is not None)
    err.add_note(
        f"The previous {outputs} of dataset '{name}' (if any) were removed by Snakemake before this "
        f"job started and are not restored. Fix the input named above and run again to rebuild them "
        f"(e.g. snakemake {snakemake.output.cache}); jobs that use this dataset keep their outputs "
        "and re-run once the cache is rebuilt."
    )
    raise  # the traceback in the log shows the error, then the note
log.info("cached %d records of %s to %s", n, name, snakemake.output.cache)
