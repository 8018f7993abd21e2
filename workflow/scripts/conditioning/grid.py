"""Glue for rule conditioning_grid: an experiment's images side by side."""

from pathlib import Path

from vlmflow.conditioning.plots import comparison_grid
from vlmflow.core.io import read_json
from vlmflow.core.scripting import log_to

log = log_to(snakemake.log[0])
metadata = Path(snakemake.input.metadata)
comparison_grid(read_json(metadata), metadata.parent, snakemake.output.grid, snakemake.wildcards.experiment)
log.info("wrote %s", snakemake.output.grid)
