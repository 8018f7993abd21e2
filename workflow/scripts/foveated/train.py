"""Glue for rule train_foveated: one run of the foveated-VLM sweeps, resumable."""

import hashlib
from pathlib import Path

import torch

from vlmflow.core.gpu_slots import gpu_slot
from vlmflow.core.io import folder_signature
from vlmflow.core.models import pick_device
from vlmflow.core.scripting import log_to
from vlmflow.core.settings import FoveatedSettings
from vlmflow.foveated.data import read_samples
from vlmflow.foveated.model import from_parts
from vlmflow.foveated.trainer import FoveatedTrainer

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
settings = FoveatedSettings(**snakemake.params.settings)
train, val = read_samples(snakemake.input.train), read_samples(snakemake.input.val)
digest = hashlib.sha256(Path(snakemake.input.train).read_bytes() + Path(snakemake.input.val).read_bytes()).hexdigest()
parts = snakemake.params.parts
with gpu_slot(0 if snakemake.params.device == "cpu" else snakemake.resources.gpu) as devices:
    log.info("GPU devices: %s", ",".join(devices) or "none")
    device, _ = pick_device(snakemake.params.device)
    model, tokenizer, processor = from_parts(
        parts["vision"], parts["language"], snakemake.params.settings, settings.seed
    )
    signatures = {role: folder_signature(path) for role, path in parts.items()}  # contents, not paths
    fingerprint = {"parts": signatures, "data": digest, "settings": snakemake.params.settings}
    trainer = FoveatedTrainer(model, tokenizer, processor, train, val, settings, fingerprint, device)
    state = Path(snakemake.params.state)
    log.info(
        "%s: %d steps of %d samples (%s)",
        snakemake.wildcards.run,
        settings.steps,
        settings.batch_size,
        model.architecture,
    )
    trainer.run(state)
    out = snakemake.output
    trainer.export(state, Path(out.model), Path(out.log), Path(out.evals), Path(out.attention))
log.info("trained %s: %d steps", snakemake.wildcards.run, settings.steps)
