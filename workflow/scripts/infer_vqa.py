"""Glue for rule infer_vqa: batched, resumable generation of one model on one cached dataset."""

import torch

from vlmflow.inference import fingerprint, run_inference
from vlmflow.models import load_vlm
from vlmflow.records import read_records
from vlmflow.scripting import log_to
from vlmflow.settings import GenerationSettings

log = log_to(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
settings = GenerationSettings(**snakemake.params.generation)
records = read_records(snakemake.input.cache)
model, processor = load_vlm(
    snakemake.input.model, device=snakemake.params.device, trust_remote_code=snakemake.params.trust_remote_code
)
log.info("model %s on %s (%s), %d questions", snakemake.input.model, model.device, model.dtype, len(records))
key = fingerprint(snakemake.input.model, snakemake.input.cache, settings)
done = run_inference(model, processor, records, snakemake.output.predictions, settings, key)
log.info("resumed after %d rows; wrote %s", done, snakemake.output.predictions)
