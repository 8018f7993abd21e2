"""Glue for rule extract_swap_features: one scale's swap-pair and cross-group-quad vectors to NPZ."""

import numpy as np
import torch

from vlmflow.core.gpu_slots import gpu_slot
from vlmflow.core.models import load_vlm
from vlmflow.core.records import read_records
from vlmflow.core.scripting import log_to
from vlmflow.core.settings import GenerationSettings
from vlmflow.core.timing import ForwardClock
from vlmflow.probing.extraction import (
    cross_group_arrays,
    extract_swap_features,
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
# Each running GPU job gets its own device(s) (CUDA_VISIBLE_DEVICES), set before CUDA starts.
with gpu_slot(0 if snakemake.params.device == "cpu" else snakemake.resources.gpu) as devices:
    log.info("GPU devices: %s", ",".join(devices) or "none")
    model, processor = load_vlm(
        snakemake.input.model, device=snakemake.params.device, trust_remote_code=snakemake.params.trust_remote_code
    )
    log.info("model %s on %s (%s)", snakemake.input.model, model.device, model.dtype)
    layers, dtype = snakemake.params.layers, snakemake.params.dtype
    with ForwardClock(model) as clock:
        pairs = extract_swap_features(model, processor, records, settings, layers, dtype, log)
        quads = extract_swap_features(model, processor, vertical, settings, layers, dtype, log) if vertical else None
    clock.write(snakemake.log[0])
write_npz(snakemake.output.vectors, pairs)
write_npz(snakemake.output.cross, cross_group_arrays(pairs, quads))
log.info(
    "layers %s; accuracy orig %.3f swap %.3f",
    list(pairs["layers"]),
    np.mean(pairs["correct_orig"]),
    np.mean(pairs["correct_swap"]),
)
