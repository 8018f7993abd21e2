"""Glue for rule conditioning_report: the study's rows of results/summary.csv."""

from pathlib import Path

import polars as pl

from vlmflow.conditioning.report import dimension_rows, following_rows, image_rows
from vlmflow.core.io import atomic_write, read_json
from vlmflow.core.scripting import log_to
from vlmflow.report.summary import COLUMNS, SCHEMA

log = log_to(snakemake.log[0])
rows = []
for path in snakemake.input.metadata:
    experiment = Path(path).parent.name
    rows += image_rows(experiment, snakemake.params.models[experiment], read_json(path), path)
if "layers" in snakemake.input.keys():
    rows += dimension_rows(snakemake.params.analysis_model, pl.read_csv(snakemake.input.layers), snakemake.input.layers)
if "rates" in snakemake.input.keys():
    rows += following_rows(snakemake.params.following_model, pl.read_csv(snakemake.input.rates), snakemake.input.rates)
with atomic_write(snakemake.output.summary, "wb") as handle:
    pl.DataFrame(rows, schema=SCHEMA).select(COLUMNS).write_csv(handle)
log.info("%d rows", len(rows))
