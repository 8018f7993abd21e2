"""Glue for rules gather_guided_shards / gather_baseline_shards: the shards' rows (and the guide's
importance), in order, as the files one decode job writes."""

from vlmflow.core.records import read_records
from vlmflow.core.scripting import log_to
from vlmflow.core.shards import gather_jsonl
from vlmflow.guided.attention_stats import gather_importance

log = log_to(snakemake.log[0])
ids = [r.question_id for r in read_records(snakemake.input.cache, check_images=False)]
rows = gather_jsonl(snakemake.input.rows, snakemake.output.rows, ids)
if "importance" in snakemake.output.keys():
    gather_importance(snakemake.input.importance, snakemake.output.importance)
log.info("gathered %d rows from %d shards into %s", rows, len(snakemake.input.rows), snakemake.output.rows)
