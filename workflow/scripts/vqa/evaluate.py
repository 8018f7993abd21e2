"""Glue for rule evaluate_vqa: predictions + cached answers -> metrics.json and the per-type table."""

import polars as pl

from vlmflow.core.io import atomic_write, write_json
from vlmflow.core.scripting import log_to
from vlmflow.data.evaluate import evaluate_predictions
from vlmflow.data.typed_metric import Tolerance, markdown_table, report_table_rows

log = log_to(snakemake.log[0])
report = evaluate_predictions(
    snakemake.input.cache,
    snakemake.input.predictions,
    snakemake.params.metric,
    snakemake.params.variant,
    Tolerance(**snakemake.params.tolerance),
    dataset_format=snakemake.params.dataset_format,
)
write_json(snakemake.output.metrics, {"experiment": snakemake.params.experiment, **report})
rows = pl.DataFrame(
    report_table_rows(report["typed"]),
    schema={"qtype": pl.String, "n": pl.Int64, "accuracy": pl.Float64, "exact": pl.Float64, "f1": pl.Float64},
)
with atomic_write(snakemake.output.per_type_csv, "wb") as handle:
    rows.write_csv(handle)
with atomic_write(snakemake.output.per_type_md) as handle:
    handle.write(f"# {snakemake.params.experiment}\n\n{markdown_table(report['typed'])}\n")
log.info(
    "%s: %s = %.4f over %d questions", snakemake.params.experiment, report["metric"], report["accuracy"], report["n"]
)
