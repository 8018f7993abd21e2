"""Glue for rule conditioning_dimensions: every VLM layer against the reference encoder."""

import torch

from vlmflow.conditioning.dimensions import dimension_tables
from vlmflow.conditioning.generate import load_encoders
from vlmflow.conditioning.plots import plot_dimensions
from vlmflow.core.io import atomic_write
from vlmflow.core.scripting import log_to

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
spec, model = snakemake.params.spec, snakemake.params.model
_, encoders = load_encoders(
    model["pipeline"],
    model["vlm"],
    spec.get("image"),
    spec.get("device", "auto"),
    model["trust_remote_code"],
)
options = {k: spec[k] for k in ("outlier_ratio", "top_k", "reference_layer") if k in spec}  # else its defaults
layers, outliers = dimension_tables(encoders, spec["prompts"], **options)
for frame, path in ((layers, snakemake.output.layers), (outliers, snakemake.output.outliers)):
    with atomic_write(path, "wb") as handle:
        frame.write_csv(handle)
plot_dimensions(
    layers,
    outliers,
    snakemake.output.plot,
    f"{spec['model']}: VLM layers against the reference encoder",
)
log.info(
    "%d layer x token-type rows; largest outlier ratio %.1f",
    layers.height,
    layers["max_ratio"].max(),
)
