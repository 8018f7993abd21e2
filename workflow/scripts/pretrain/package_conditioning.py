"""Glue for rule package_conditioning_pipeline: the trained pipeline and VLM in the zoo's dtype,
evaluated as shipped, with their provenance.json."""

from pathlib import Path

import torch

from vlmflow.conditioning.package import evaluate_shipped, export, provenance
from vlmflow.conditioning.pretrain import read_scenes
from vlmflow.core.io import atomic_directory, read_json, write_json
from vlmflow.core.scripting import log_to
from vlmflow.core.settings import ZIMAGE_PARTS

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
config = snakemake.params.config
with atomic_directory(snakemake.output.folder) as tmp:
    export(snakemake.input.random, {p: snakemake.input[p] for p in ZIMAGE_PARTS}, tmp, snakemake.params.dtype)
    evaluation = evaluate_shipped(tmp, read_scenes(snakemake.input.val), config["eval"])
    record = provenance(
        model=snakemake.wildcards.model,
        config=config,
        folder=tmp,
        corpus=Path(snakemake.input.scenes),
        logs={p: Path(snakemake.input[f"{p}_log"]) for p in ZIMAGE_PARTS},
        first_steps_record=read_json(snakemake.input.first_steps),
        evaluation=evaluation,
    )
    write_json(tmp / "provenance.json", record)
log.info("packaged %s: %s", snakemake.wildcards.model, evaluation)
