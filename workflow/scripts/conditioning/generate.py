"""Glue for rule generate_conditioning: one experiment's images and metadata.json."""

import torch

from vlmflow.conditioning.generate import load_job, run_experiment
from vlmflow.conditioning.recipe import ConditioningSpec
from vlmflow.core.scripting import log_to

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
spec = snakemake.params.spec
pipeline, encoders, settings, models = load_job(spec, snakemake.params.model)
outputs = {name: ConditioningSpec.from_config(recipe) for name, recipe in spec["outputs"].items()}
out_dir = snakemake.output.metadata.rsplit("/", 1)[0]
run_experiment(pipeline, encoders, spec["prompt"], outputs, settings, out_dir, models, log)
log.info("%s: %d images in %s", snakemake.wildcards.experiment, len(outputs), out_dir)
