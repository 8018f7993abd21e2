"""Glue for checkpoint decide_foveated_sweep: which run of a sweep won (the LR sweep reads it)."""

from vlmflow.core.io import write_json
from vlmflow.core.scripting import log_to
from vlmflow.foveated.sweeps import decide

log = log_to(snakemake.log[0])
decision = decide(dict(zip(snakemake.params.runs, snakemake.input.evals, strict=True)), snakemake.params.metric)
write_json(snakemake.output.decision, {"sweep": snakemake.wildcards.sweep, **decision})
log.info(
    "sweep %s: %s wins on %s (%s)",
    snakemake.wildcards.sweep,
    decision["winner"],
    decision["metric"],
    decision["values"],
)
