"""Glue for rule pretrain_first_steps: the weights' digest after each of the run's first steps."""

import torch

from vlmflow.core.io import write_json
from vlmflow.core.records import read_records
from vlmflow.core.scripting import log_to
from vlmflow.core.settings import GenerationSettings, TrainSettings
from vlmflow.finetune.trainer import Trainer, load_for_training
from vlmflow.pretrain.zoo import corpus_digest
from vlmflow.zoo.provenance import first_steps_record, state_digest

log = log_to(snakemake.log[0])
torch.set_num_threads(1)  # one CPU thread: the same `float_machine` gives the same digests
torch.use_deterministic_algorithms(True, warn_only=True)
settings = TrainSettings(**snakemake.params.settings)
records = read_records(snakemake.input.caches)
model, processor = load_for_training(snakemake.input.model, settings, "cpu")
trainer = Trainer(model, processor, records, settings, GenerationSettings(**snakemake.params.generation), {})
steps = [{"step": 0, "weights_sha256": state_digest(trainer.model)}]
for _ in range(snakemake.params.steps):
    row = trainer.train_step()
    steps.append({"step": row["step"], "loss": row["loss"], "weights_sha256": state_digest(trainer.model)})
    log.info("step %d: loss %.6f, weights %s", row["step"], row["loss"], steps[-1]["weights_sha256"][:16])
write_json(snakemake.output.digests, first_steps_record(corpus_digest(snakemake.input.caches), steps))
