"""Glue for rule train_model: train one experiment to one scale (step count), resumably."""

import hashlib
from pathlib import Path

import torch

from vlmflow.core.gpu_slots import gpu_slot
from vlmflow.core.records import read_records
from vlmflow.core.scripting import log_to
from vlmflow.core.settings import GenerationSettings, TrainSettings
from vlmflow.finetune.trainer import train_stage

log = log_to(snakemake.log[0])
workers = snakemake.params.loader_workers  # per training process, besides its threads
torch.set_num_threads(max(1, snakemake.threads - workers * snakemake.params.gpus))  # threads: capped by --cores
torch.use_deterministic_algorithms(True, warn_only=True)
settings = TrainSettings(**snakemake.params.settings)
records = read_records(snakemake.input.caches)
digest = hashlib.sha256(b"".join(Path(p).read_bytes() for p in snakemake.input.caches)).hexdigest()
previous = Path(snakemake.input.previous) if "previous" in snakemake.input.keys() else None
# Each running GPU job gets its own device(s) (CUDA_VISIBLE_DEVICES), set before CUDA starts.
with gpu_slot(0 if snakemake.params.device == "cpu" else snakemake.resources.gpu) as devices:
    log.info("GPU devices: %s", ",".join(devices) or "none")
    rows = train_stage(
        snakemake.input.model,
        records,
        digest,
        settings,
        GenerationSettings(**snakemake.params.generation),
        until=int(snakemake.wildcards.step),
        out_dir=Path(snakemake.output.checkpoint),
        run_dir=Path(snakemake.params.run_dir),
        previous=previous,
        device=snakemake.params.device,
        wandb_name=snakemake.wildcards.experiment if snakemake.params.wandb else None,
        gpus=snakemake.params.gpus,  # > 1: data-parallel processes, the job's threads split between them
        loader_workers=workers,
    )
    if rows:
        log.info("trained %d steps on %d records; last loss %.4f", len(rows), len(records), rows[-1]["loss"])
