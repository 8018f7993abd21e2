"""Glue for rules extract_swap_features(_shard): one scale's swap-pair and cross-group-quad vectors
to NPZ; a shard writes its part of the pairs' and of the vertical pairs' arrays, for the gather."""

import numpy as np
import torch

from vlmflow.core.gpu_slots import gpu_slot
from vlmflow.core.models import load_vlm
from vlmflow.core.placement import describe_placement, placement_arguments
from vlmflow.core.records import read_records
from vlmflow.core.scripting import log_to
from vlmflow.core.settings import GenerationSettings
from vlmflow.core.timing import ForwardClock
from vlmflow.probing.extraction import (
    cross_group_arrays,
    extract_swap_features,
    pair_shard,
    swap_pairs,
    write_npz,
)
from vlmflow.probing.quads import read_boxes, vertical_pairs

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
settings = GenerationSettings(**snakemake.params.generation)
records = read_records(snakemake.input.cache)
boxes = read_boxes(snakemake.input.boxes) if "boxes" in snakemake.input.keys() else {}
vertical = vertical_pairs(swap_pairs(records), boxes, snakemake.params.vertical_template)
log.info("%d swap pairs; %d cross-group quads from %d boxed scenes", len(records) // 2, len(vertical) // 2, len(boxes))
shard = snakemake.wildcards.get("shard")
if shard:
    records = pair_shard(records, shard, settings.batch_size)
    vertical = pair_shard(vertical, shard, settings.batch_size)
    log.info("shard %s: %d swap pairs, %d vertical pairs", shard, len(records) // 2, len(vertical) // 2)
# Each running GPU job gets its own device(s) (CUDA_VISIBLE_DEVICES), set before CUDA starts.
with (
    gpu_slot(0 if snakemake.params.device == "cpu" else snakemake.resources.gpu) as devices,
    placement_arguments(snakemake.params.placement, snakemake.output.vectors) as placement,
):
    log.info("GPU devices: %s", ",".join(devices) or "none")
    model, processor = load_vlm(
        snakemake.input.model,
        device=snakemake.params.device,
        **placement,
        trust_remote_code=snakemake.params.trust_remote_code,
    )
    log.info("model %s on %s (%s)", snakemake.input.model, describe_placement(model), model.dtype)
    layers, dtype = snakemake.params.layers, snakemake.params.dtype
    with ForwardClock(model) as clock:
        pairs = extract_swap_features(model, processor, records, settings, layers, dtype, log)
        # a shard writes its vertical arrays even when it has none (no rows, same keys)
        quads = (
            extract_swap_features(model, processor, vertical, settings, layers, dtype, log)
            if vertical or shard
            else None
        )
    clock.write(snakemake.log[0])
write_npz(snakemake.output.vectors, pairs)
if shard:
    write_npz(snakemake.output.vertical, quads)
else:
    write_npz(snakemake.output.cross, cross_group_arrays(pairs, quads))
log.info(
    "layers %s; %d pairs; accuracy orig %.3f swap %.3f",
    list(pairs["layers"]),
    len(pairs["pair_id"]),
    np.mean(pairs["correct_orig"]) if len(pairs["pair_id"]) else np.nan,
    np.mean(pairs["correct_swap"]) if len(pairs["pair_id"]) else np.nan,
)
