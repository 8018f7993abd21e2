"""Glue for rule evaluate_foveated: a trained run scored in each of its modes on the fixed val set."""

import torch

from vlmflow.core.gpu_slots import gpu_slot
from vlmflow.core.io import write_json
from vlmflow.core.models import pick_device
from vlmflow.core.scripting import log_to
from vlmflow.core.settings import FoveatedSettings
from vlmflow.foveated.data import FrameStore, fixed_subset, read_samples
from vlmflow.foveated.evaluate import FrameBatches, evaluate_modes
from vlmflow.foveated.model import load_frame_lm

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
settings = FoveatedSettings(**snakemake.params.settings)
val = read_samples(snakemake.input.val)
indices = fixed_subset(len(val), settings.val_samples, settings.seed)
with gpu_slot(0 if snakemake.params.device == "cpu" else snakemake.resources.gpu) as devices:
    device, _ = pick_device(snakemake.params.device)
    model, tokenizer, processor = load_frame_lm(snakemake.input.model)
    model.to(device)
    batches = FrameBatches(
        val,
        tokenizer,
        FrameStore(processor, settings.replicate_image_frames),
        settings.max_length,
        device,
    )
    result = evaluate_modes(model, batches, indices, settings.mode, batch_size=32)
write_json(snakemake.output.evaluation, {"run": snakemake.wildcards.run, **result})
for mode, scores in result["modes"].items():
    log.info(
        "%s %s: val_loss %.4f accuracy %.3f",
        snakemake.wildcards.run,
        mode,
        scores["val_loss"],
        scores["accuracy"],
    )
