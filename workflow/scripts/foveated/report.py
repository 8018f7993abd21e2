"""Glue for rule foveated_report: the figures over all runs and the runs' summary rows."""

from pathlib import Path

import polars as pl

from vlmflow.core.io import atomic_write, read_json
from vlmflow.core.scripting import log_to
from vlmflow.foveated.plots import (
    plot_attention_entropy,
    plot_attention_heatmaps,
    plot_loss_ratio,
    plot_three_modes,
    plot_token_frontier,
)
from vlmflow.foveated.sweeps import decision_rows, summary_rows
from vlmflow.report.summary import SCHEMA

log = log_to(snakemake.log[0])
p = snakemake.params
folders = [Path(f).parent for f in snakemake.input.files if f.endswith("eval.json")]
runs = dict(zip(p.runs, folders, strict=True))
evals = {run: path / "eval.json" for run, path in runs.items()}
figures = dict(
    zip(
        ("loss_ratio", "entropy", "frontier", "modes", "heatmaps"),
        snakemake.output.figures,
        strict=True,
    )
)
plot_loss_ratio(runs, figures["loss_ratio"])
plot_attention_entropy(runs, figures["entropy"])
plot_token_frontier(evals, figures["frontier"])
plot_three_modes(evals, figures["modes"])
plot_attention_heatmaps(Path(snakemake.input.attention).parent, figures["heatmaps"])

rows = [
    row
    for run in runs
    for row in summary_rows(run, p.specs[run]["model"], p.specs[run]["data"], evals[run], runs[run] / "evals.jsonl")
]
decided = iter(snakemake.input.decisions)  # one per sweep that was not skipped, in sweep order
for sweep in p.sweeps:
    path = None if sweep in p.skipped else next(decided)
    decision = None if path is None else {**read_json(path), "source": path}
    rows += decision_rows(sweep, decision, p.sweeps[sweep]["runs"])
with atomic_write(snakemake.output.summary, "wb") as handle:
    pl.DataFrame(rows, schema=SCHEMA).write_csv(handle)
log.info("foveated report: %d runs, %d summary rows", len(runs), len(rows))
