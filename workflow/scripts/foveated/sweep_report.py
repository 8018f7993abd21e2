"""Glue for rule foveated_sweep_report: one sweep's curves and table (or why it was skipped)."""

from pathlib import Path

from vlmflow.core.scripting import log_to
from vlmflow.foveated.plots import plot_sweep_curves, skipped_sweep
from vlmflow.foveated.tables import sweep_table

log = log_to(snakemake.log[0])
out, sweep, p = snakemake.output, snakemake.wildcards.sweep, snakemake.params
if p.skipped:
    reason = f"sweep {sweep} skipped: {p.skip_when['winner']} won the {p.skip_when['sweep']} sweep"
    skipped_sweep(reason, out.curves, out.csv, out.markdown)
    log.info(reason)
else:
    folders = [Path(f).parent for f in snakemake.input.files if f.endswith("eval.json")]
    runs = dict(zip(p.runs, folders, strict=True))
    plot_sweep_curves(runs, out.curves, f"sweep {sweep}: {', '.join(p.runs)}", metric=p.metric)
    sweep_table({run: path / "eval.json" for run, path in runs.items()}, runs, out.csv, out.markdown)
    log.info("sweep %s: %d runs", sweep, len(runs))
