"""Glue for rules guided_decode / baseline_decode (and their per-shard versions): one pruning method
at every keep ratio, resumably."""

import hashlib
from pathlib import Path

import torch

from vlmflow.core.gpu_slots import gpu_slot
from vlmflow.core.placement import describe_placement, placement_arguments
from vlmflow.core.records import read_records
from vlmflow.core.scripting import log_to
from vlmflow.core.settings import GenerationSettings, PruningSettings
from vlmflow.core.shards import shard_of
from vlmflow.core.timing import ForwardClock
from vlmflow.guided.runner import PrunedRunner, load_pair, pruning_fingerprint, run_pruned

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
generation = GenerationSettings(**snakemake.params.generation)
pruning = PruningSettings(**snakemake.params.pruning)
guide = snakemake.input.get("guide")
records = read_records(snakemake.input.cache)
shard = dict(snakemake.wildcards.items()).get("shard")
if shard is not None:
    records = shard_of(records, shard, generation.batch_size)
digest = hashlib.sha256(Path(snakemake.input.cache).read_bytes()).hexdigest()
# Each running GPU job gets its own device(s) (CUDA_VISIBLE_DEVICES), set before CUDA starts.
with (
    gpu_slot(0 if snakemake.params.device == "cpu" else snakemake.resources.gpu) as devices,
    placement_arguments(snakemake.params.placement, snakemake.output.rows) as placement,  # the decode model's
):
    log.info("GPU devices: %s", ",".join(devices) or "none")
    pair = load_pair(
        snakemake.input.decode,
        guide,
        pruning,
        snakemake.params.device,
        tuple(snakemake.params.trust_remote_code),
        **placement,
    )
    log.info(
        "%s: decode %s on %s, guide %s, shared vision %s, %d questions",
        pruning.method,
        snakemake.input.decode,
        describe_placement(pair.decode),
        guide,
        pair.shared_vision,
        len(records),
    )
    key = {**pruning_fingerprint(snakemake.input.decode, guide, digest, generation, pruning), "shard": shard}
    with ForwardClock(pair.decode, pair.guide) as clock:
        done = run_pruned(
            PrunedRunner(pair, generation, pruning),
            records,
            snakemake.output.rows,
            key,
            snakemake.output.get("importance"),
            log,
        )
    clock.write(snakemake.log[0])
    log.info("resumed after %d rows; wrote %s", done, snakemake.output.rows)
