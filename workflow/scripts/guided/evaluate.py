"""Glue for rule evaluate_pruned: one keep ratio's answers (or the guide's) -> predictions + metrics."""

from vlmflow.core.io import read_jsonl, write_json, write_jsonl
from vlmflow.core.scripting import log_to
from vlmflow.data.evaluate import evaluate_predictions
from vlmflow.guided.rows import keep_predictions

log = log_to(snakemake.log[0])
answers = snakemake.wildcards.answers
write_jsonl(
    snakemake.output.predictions,
    keep_predictions(list(read_jsonl(snakemake.input.rows)), answers.removeprefix("keep-")),
)
report = evaluate_predictions(
    snakemake.input.cache,
    snakemake.output.predictions,
    snakemake.params.metric,
    dataset_format=snakemake.params.dataset_format,
)
write_json(snakemake.output.metrics, {"experiment": snakemake.params.name, **report})
log.info("%s: %s = %.4f over %d questions", snakemake.params.name, report["metric"], report["accuracy"], report["n"])
