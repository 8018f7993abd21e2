"""Glue for rule pretrain_conditioning_part: one part of the tiny Z-Image pipeline, trained and saved."""

import shutil
from pathlib import Path

import torch

from vlmflow.conditioning.pretrain import pretrain_part, read_scenes, save_part
from vlmflow.core.io import atomic_directory
from vlmflow.core.scripting import log_to
from vlmflow.core.settings import ZIMAGE_PARTS, ZImagePartSettings

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
part = snakemake.wildcards.part
scenes = read_scenes(snakemake.input.scenes)
trained = {name: snakemake.input[name] for name in ZIMAGE_PARTS if name in snakemake.input.keys()}
parts = pretrain_part(
    part,
    snakemake.input.random,
    trained,
    scenes,
    ZImagePartSettings(**snakemake.params.settings),
    Path(snakemake.params.state),
    Path(snakemake.output.log),
)
with atomic_directory(snakemake.output.part) as tmp:
    save_part(part, parts, scenes, tmp)
for state in (Path(snakemake.params.state), Path(snakemake.params.state + ".old")):
    shutil.rmtree(state, ignore_errors=True)  # finished: the resume state has served
log.info("trained %s of %s on %d scenes", part, snakemake.wildcards.model, len(scenes.rows))
