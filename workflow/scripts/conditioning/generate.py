"""Glue for rule generate_conditioning: one experiment's images and metadata.json."""

import torch

from vlmflow.conditioning.generate import load_encoders, resume_key, run_experiment
from vlmflow.conditioning.recipe import ConditioningSpec
from vlmflow.core.scripting import log_to
from vlmflow.core.settings import ImageSettings

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
spec, model = snakemake.params.spec, snakemake.params.model
pipeline, encoders = load_encoders(
    model["pipeline"], model["vlm"], spec["image"], spec["device"], model["trust_remote_code"]
)
outputs = {name: ConditioningSpec.from_config(recipe) for name, recipe in spec["outputs"].items()}
settings = ImageSettings(**{k: spec[k] for k in ImageSettings.__dataclass_fields__})
out_dir = snakemake.output.metadata.rsplit("/", 1)[0]
models = resume_key(model["pipeline"], model["vlm"], spec["image"])
run_experiment(pipeline, encoders, spec["prompt"], outputs, settings, out_dir, models, log)
log.info("%s: %d images in %s", snakemake.wildcards.experiment, len(outputs), out_dir)
