"""Glue for checkpoint count_records: how many records a cached dataset holds, for `shard_size`."""

from vlmflow.core.io import write_json
from vlmflow.core.scripting import log_to

log = log_to(snakemake.log[0])
with open(snakemake.input.cache, encoding="utf-8") as cache:
    records = sum(1 for line in cache if line.strip())
write_json(snakemake.output.counted, {"records": records})
log.info("%s: %d records", snakemake.input.cache, records)
