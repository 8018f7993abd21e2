"""Glue for rule label_check: which tokens the first training samples supervise."""

from transformers import AutoConfig, AutoProcessor

from vlmflow.architectures.registry import architecture_of
from vlmflow.core.io import write_jsonl
from vlmflow.core.records import read_records
from vlmflow.core.scripting import log_to
from vlmflow.core.settings import GenerationSettings
from vlmflow.finetune.examples import collate, label_report

log = log_to(snakemake.log[0])
records = read_records(snakemake.input.caches)[: snakemake.params.samples]
processor = AutoProcessor.from_pretrained(snakemake.input.model, local_files_only=True)
arch = architecture_of(AutoConfig.from_pretrained(snakemake.input.model, local_files_only=True))
batch = collate(arch, processor, records, GenerationSettings(**snakemake.params.generation))
rows = label_report(processor, batch, [r.question_id for r in records])
write_jsonl(snakemake.output.labels, rows)
for row in rows:
    log.info("%s: supervised %r, mask ratio %.3f", row["question_id"], row["supervised_text"], row["mask_ratio"])
