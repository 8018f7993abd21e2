"""Glue for rules infer_vqa and infer_vqa_shard: batched, resumable generation of one model on one
cached dataset, or on one shard of it."""

import torch

from vlmflow.core.gpu_slots import gpu_slot
from vlmflow.core.models import load_vlm
from vlmflow.core.placement import describe_placement, placement_arguments
from vlmflow.core.records import read_records
from vlmflow.core.scripting import log_to
from vlmflow.core.settings import GenerationSettings
from vlmflow.core.shards import shard_of
from vlmflow.core.timing import ForwardClock
from vlmflow.vqa.inference import fingerprint, run_inference

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
settings = GenerationSettings(**snakemake.params.generation)
records = read_records(snakemake.input.cache)
shard = dict(snakemake.wildcards.items()).get("shard")
if shard is not None:
    records = shard_of(records, shard, settings.batch_size)
# Each running GPU job gets its own device(s) (CUDA_VISIBLE_DEVICES), set before CUDA starts.
with (
    gpu_slot(0 if snakemake.params.device == "cpu" else snakemake.resources.gpu) as devices,
    placement_arguments(snakemake.params.placement, snakemake.output.predictions) as placement,
):
    log.info("GPU devices: %s", ",".join(devices) or "none")
    model, processor = load_vlm(
        snakemake.input.model,
        device=snakemake.params.device,
        **placement,
        trust_remote_code=snakemake.params.trust_remote_code,
    )
    log.info(
        "model %s on %s (%s), %d questions%s",
        snakemake.input.model,
        describe_placement(model),
        model.dtype,
        len(records),
        f" (shard {shard})" if shard else "",
    )
    key = {**fingerprint(snakemake.input.model, snakemake.input.cache, settings), "shard": shard}
    with ForwardClock(model) as clock:
        done = run_inference(model, processor, records, snakemake.output.predictions, settings, key, log)
    clock.write(snakemake.log[0])
    log.info("resumed after %d rows; wrote %s", done, snakemake.output.predictions)
