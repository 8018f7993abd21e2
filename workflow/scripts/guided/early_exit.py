"""Glue for rule early_exit: the offline threshold sweep of the guide's exit score."""

from vlmflow.core.io import atomic_write, read_jsonl
from vlmflow.core.records import read_records
from vlmflow.core.scripting import log_to
from vlmflow.guided.early_exit import sweep_markdown, threshold_sweep
from vlmflow.guided.report import early_exit_frame, plot_sweep

log = log_to(snakemake.log[0])
frame = early_exit_frame(
    list(read_jsonl(snakemake.input.rows)), read_records(snakemake.input.cache), snakemake.params.metric
)
sweep = threshold_sweep(frame)
with atomic_write(snakemake.output.csv, "wb") as handle:
    sweep.write_csv(handle)
with atomic_write(snakemake.output.markdown) as handle:
    handle.write(sweep_markdown(sweep, snakemake.params.title))
plot_sweep(sweep, snakemake.output.plot, snakemake.params.title)
log.info("%d operating points over %d questions", sweep.height, frame["question_id"].n_unique())
