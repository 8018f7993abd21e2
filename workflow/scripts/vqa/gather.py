"""Glue for rule gather_vqa_shards: the shards' rows, in order, as one predictions.jsonl."""

from vlmflow.core.records import read_records
from vlmflow.core.scripting import log_to
from vlmflow.core.shards import gather_jsonl

log = log_to(snakemake.log[0])
ids = [r.question_id for r in read_records(snakemake.input.cache, check_images=False)]
rows = gather_jsonl(snakemake.input.shards, snakemake.output.predictions, ids)
log.info("gathered %d rows from %d shards into %s", rows, len(snakemake.input.shards), snakemake.output.predictions)
