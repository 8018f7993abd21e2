"""Glue for rule train_foveated: one run of the foveated-VLM sweeps, resumable, then its trained
model (as saved) scored in each of its modes on the fixed val set."""

import hashlib
from pathlib import Path

import torch

from vlmflow.core.gpu_slots import gpu_slot
from vlmflow.core.io import folder_signature, write_json
from vlmflow.core.models import pick_device
from vlmflow.core.scripting import log_to
from vlmflow.core.settings import FoveatedSettings
from vlmflow.foveated.data import FrameStore, fixed_subset, read_samples
from vlmflow.foveated.evaluate import FrameBatches, evaluate_modes
from vlmflow.foveated.model import load_frame_lm
from vlmflow.foveated.trainer import train_foveated

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
settings = FoveatedSettings(**snakemake.params.settings)
train, val = read_samples(snakemake.input.train), read_samples(snakemake.input.val)
digest = hashlib.sha256(Path(snakemake.input.train).read_bytes() + Path(snakemake.input.val).read_bytes()).hexdigest()
parts = snakemake.params.parts
signatures = {role: folder_signature(path) for role, path in parts.items()}  # contents, not paths
fingerprint = {"parts": signatures, "data": digest, "settings": snakemake.params.settings}
out = snakemake.output
outputs = {
    "model_dir": Path(out.model),
    "log": Path(out.log),
    "evals": Path(out.evals),
    "attention": Path(out.attention),
}
with gpu_slot(0 if snakemake.params.device == "cpu" else snakemake.resources.gpu) as devices:
    log.info("GPU devices: %s", ",".join(devices) or "none")
    log.info("%s: %d process(es)", snakemake.wildcards.run, snakemake.params.gpus)
    train_foveated(
        dict(parts),
        train,
        val,
        settings,
        fingerprint,
        Path(snakemake.params.state),
        outputs,
        device=snakemake.params.device,
        gpus=snakemake.params.gpus,  # > 1: data-parallel processes, the job's threads split between them
    )
    log.info("trained %s: %d steps", snakemake.wildcards.run, settings.steps)
    device, _ = pick_device(snakemake.params.device)  # one device: the saved model, evaluated whole
    model, tokenizer, processor = load_frame_lm(out.model)
    model.to(device)
    frames = FrameStore(processor, settings.replicate_image_frames)
    batches = FrameBatches(val, tokenizer, frames, settings.max_length, device)
    indices = fixed_subset(len(val), settings.val_samples, settings.seed)
    result = evaluate_modes(model, batches, indices, settings.mode, batch_size=32)
write_json(out.evaluation, {"run": snakemake.wildcards.run, **result})
for mode, scores in result["modes"].items():
    log.info(
        "%s %s: val_loss %.4f accuracy %.3f", snakemake.wildcards.run, mode, scores["val_loss"], scores["accuracy"]
    )
