"""Glue for rules synth_*: write one split of a synthetic dataset in its upstream format."""

from pathlib import Path

from vlmflow.scripting import log_to
from vlmflow.synth import write_kvasir, write_swap_pairs, write_textvqa, write_vqav2

log = log_to(snakemake.log[0])
split, p = snakemake.wildcards.split, snakemake.params[0]
common = {"seed": p["seed"], "image_size": p["image_size"]}
match snakemake.rule:
    case "synth_vqav2":
        write_vqav2(Path(snakemake.output.questions).parent, split, p["n"], **common)
    case "synth_textvqa":
        write_textvqa(Path(snakemake.output.json).parent, split, p["n"], **common)
    case "synth_kvasir":
        write_kvasir(Path(snakemake.output.parquet), split, p["n"], **common)
    case "synth_swap_pairs":
        write_swap_pairs(Path(snakemake.output.tsv), split, p["n"], **common, boxes_path=Path(snakemake.output.boxes))
log.info("%s: wrote split %s with %d items", snakemake.rule, split, p["n"])
