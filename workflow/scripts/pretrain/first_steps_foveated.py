"""Glue for rule pretrain_foveated_first_steps: the parts' digest after each of the run's first steps."""

import torch

from vlmflow.core.io import write_json
from vlmflow.core.scripting import log_to
from vlmflow.core.settings import FoveatedSettings
from vlmflow.foveated.data import read_samples
from vlmflow.foveated.parts import corpus_digest, first_steps
from vlmflow.zoo.provenance import first_steps_record

log = log_to(snakemake.log[0])
torch.set_num_threads(1)  # one CPU thread: the same `float_machine` gives the same digests
torch.use_deterministic_algorithms(True, warn_only=True)
settings = FoveatedSettings(**snakemake.params.settings)
train, val = read_samples(snakemake.input.train), read_samples(snakemake.input.val)
steps = first_steps(snakemake.params.parts, train, val, settings, snakemake.params.steps)
for row in steps[1:]:
    log.info("step %d: loss %.6f, weights %s", row["step"], row["loss"], row["weights_sha256"][:16])
write_json(snakemake.output.digests, first_steps_record(corpus_digest(snakemake.input.train), steps))
