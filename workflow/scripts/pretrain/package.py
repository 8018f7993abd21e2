"""Glue for rule package_zoo_scale: a scale's exported weights plus its provenance.json."""

from pathlib import Path

from vlmflow.core.io import read_json
from vlmflow.core.scripting import log_to
from vlmflow.pretrain.zoo import package_scale, provenance

log = log_to(snakemake.log[0])
config = snakemake.params.config
samples = int(snakemake.wildcards.samples)
train_log = Path(snakemake.input.checkpoint) / "train_log.jsonl" if samples else None
record = provenance(
    model=snakemake.wildcards.model,
    config=config,
    samples=samples,
    weights_dir=Path(snakemake.input.weights),
    corpus=snakemake.input.caches,
    metrics_files=snakemake.input.metrics,
    first_steps=read_json(snakemake.input.first_steps),
    train_log=train_log,
    samples_per_step=config["batch_size"] * config["grad_accum"],
    vision_from=Path(snakemake.input.vision) if "vision" in snakemake.input.keys() else None,
    init_from=Path(snakemake.input.init) if "init" in snakemake.input.keys() else None,
    init_origin=snakemake.params.init_origin,
)
package_scale(snakemake.input.weights, snakemake.output.scale, record)
log.info("packaged %s samples-%d: %s", snakemake.wildcards.model, samples, record["evaluation"])
