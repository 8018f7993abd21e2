"""Glue for rule evaluate_vqa: predictions + cached answers -> metrics.json."""

from vlmflow.evaluate import evaluate_predictions
from vlmflow.io import write_json
from vlmflow.scripting import log_to

log = log_to(snakemake.log[0])
report = evaluate_predictions(
    snakemake.input.cache, snakemake.input.predictions, snakemake.params.metric, snakemake.params.variant
)
write_json(snakemake.output.metrics, {"experiment": snakemake.params.experiment, **report})
log.info("%s: %s = %.4f over %d questions", snakemake.params.experiment, report["metric"], report["accuracy"], report["n"])
