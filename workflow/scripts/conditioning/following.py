"""Glue for rule conditioning_caption_following: every recipe's pictures of the captions, measured."""

from pathlib import Path

import torch

from vlmflow.conditioning.caption_following import following_rates
from vlmflow.conditioning.following import read_captions, run_following
from vlmflow.conditioning.generate import load_job
from vlmflow.conditioning.plots import plot_following
from vlmflow.conditioning.recipe import ConditioningSpec
from vlmflow.core.io import atomic_write
from vlmflow.core.scripting import log_to

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
spec = snakemake.params.spec
pipeline, encoders, settings, models = load_job(spec, snakemake.params.model)
recipes = {name: ConditioningSpec.from_config(recipe) for name, recipe in spec["recipes"].items()}
captions = read_captions(snakemake.input.captions)
out = Path(snakemake.output.pictures)
rows = run_following(pipeline, encoders, captions, recipes, settings, out, models, log)
rates = following_rates(rows, list(recipes))
with atomic_write(snakemake.output.rates, "wb") as handle:
    rates.write_csv(handle)
plot_following(rates, rows, out.parent, snakemake.output.plot, spec["grid_captions"])
log.info("caption following over %d captions:\n%s", len(captions), rates)
