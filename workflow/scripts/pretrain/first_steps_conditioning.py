"""Glue for rule pretrain_conditioning_first_steps: each part's weights digest at step 0 and after
its first steps from the random build, which a rebuild of the pipeline must reproduce."""

import tempfile
from pathlib import Path

import torch

from vlmflow.conditioning.pretrain import first_steps, read_scenes
from vlmflow.core.io import write_json
from vlmflow.core.scripting import log_to
from vlmflow.core.settings import ZIMAGE_PARTS, ZImagePartSettings
from vlmflow.zoo.provenance import float_machine

log = log_to(snakemake.log[0])
torch.set_num_threads(1)  # the digests must not depend on the machine's thread count
config = snakemake.params.config
with tempfile.TemporaryDirectory(dir=Path(snakemake.output.digests).parent) as work:
    record = first_steps(
        snakemake.input.random,
        read_scenes(snakemake.input.scenes),
        {part: ZImagePartSettings(**config[part]) for part in ZIMAGE_PARTS},
        snakemake.params.steps,
        Path(work),
    )
write_json(snakemake.output.digests, {**record, "machine": float_machine()})
log.info("first steps of %s: %s", snakemake.wildcards.model, record)
