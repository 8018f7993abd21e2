"""Glue for rule package_foveated_parts: the trained parts in the zoo's dtype plus their provenance.json."""

import json
from pathlib import Path

from vlmflow.core.io import atomic_directory, read_json, read_jsonl
from vlmflow.core.scripting import log_to
from vlmflow.foveated.parts import export_parts, provenance

log = log_to(snakemake.log[0])
config = snakemake.params.config
evals = read_jsonl(snakemake.input.evals)
with atomic_directory(snakemake.output.parts) as tmp:
    export_parts(snakemake.input.model, tmp, snakemake.params.dtype)
    record = provenance(
        model=snakemake.wildcards.model,
        config=config,
        parts_dir=tmp,
        corpus=Path(snakemake.input.corpus),
        evals=evals,
        train_log=Path(snakemake.input.log),
        first_steps_record=read_json(snakemake.input.first_steps),
        val_samples=read_json(snakemake.input.evaluation)["modes"]["blank_frames"]["n"],  # the fixed val set's size
    )
    (tmp / "provenance.json").write_text(json.dumps(record, indent=2) + "\n")
log.info("packaged %s samples-%s: %s", snakemake.wildcards.model, snakemake.wildcards.samples, record["evaluation"])
