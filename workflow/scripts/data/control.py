"""Glue for rule blank_image_control: a cached dataset's copy with every image blanked."""

from pathlib import Path

from vlmflow.core.io import atomic_directory, write_jsonl
from vlmflow.core.records import read_records
from vlmflow.core.scripting import log_to
from vlmflow.data.controls import blank_image_records, image_sizes, write_blank_images

log = log_to(snakemake.log[0])
records = read_records(snakemake.input.cache)
sizes = image_sizes(records)
with atomic_directory(snakemake.output.images) as tmp:
    write_blank_images(sizes, tmp)
blanked = blank_image_records(records, sizes, Path(snakemake.output.images))
write_jsonl(snakemake.output.cache, (record.to_json() for record in blanked))
log.info("%s: %d records, %d blank images", snakemake.output.cache, len(blanked), len(set(sizes)))
