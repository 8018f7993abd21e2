"""Glue for rule sanity_overfit: fail fast when the model cannot overfit a few samples."""

from pathlib import Path

import torch

from vlmflow.core.checkpoint import sample_order
from vlmflow.core.gpu_slots import gpu_slot
from vlmflow.core.io import write_json
from vlmflow.core.records import read_records
from vlmflow.core.scripting import log_to
from vlmflow.core.settings import GenerationSettings, TrainSettings
from vlmflow.finetune.sanity import sanity_overfit

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
torch.use_deterministic_algorithms(True, warn_only=True)
settings = TrainSettings(**snakemake.params.settings)
gate = snakemake.params.sanity
records = read_records(snakemake.input.caches)
chosen = sample_order(len(records), settings.seed, 0, min(gate["samples"], len(records)))
# Each running GPU job gets its own device(s) (CUDA_VISIBLE_DEVICES), set before CUDA starts.
with gpu_slot(0 if snakemake.params.device == "cpu" else snakemake.resources.gpu) as devices:
    log.info("GPU devices: %s", ",".join(devices) or "none")
    report = sanity_overfit(
        snakemake.input.model,
        [records[i] for i in chosen],
        settings,
        GenerationSettings(**snakemake.params.generation),
        samples=gate["samples"],
        steps=gate["steps"],
        threshold=gate["threshold"],
        log_path=Path(snakemake.log[0]).with_suffix(".steps.jsonl"),
        device=snakemake.params.device,
    )
    write_json(snakemake.output.report, report)
    log.info("sanity overfit passed: %s", report)
