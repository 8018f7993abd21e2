"""Glue for rules synth_*: write one split of a synthetic dataset in its upstream format."""

from pathlib import Path

from vlmflow.core.scripting import log_to
from vlmflow.synth.kvasir import write_kvasir
from vlmflow.synth.swap_pairs import write_swap_pairs
from vlmflow.synth.textvqa import write_textvqa
from vlmflow.synth.vqav2 import write_vqav2

log = log_to(snakemake.log[0])
split, n = snakemake.wildcards.split, snakemake.params.n
common = {"seed": snakemake.params.seed, "image_size": snakemake.params.image_size}
match snakemake.params.format:
    case "vqav2":
        write_vqav2(Path(snakemake.output.questions).parent, split, n, **common)
    case "vqav2_several":
        write_vqav2(Path(snakemake.output.questions).parent, split, n, **common, scene="several")
    case "textvqa":
        write_textvqa(Path(snakemake.output.json).parent, split, n, **common)
    case "kvasir":
        write_kvasir(Path(snakemake.output.parquet), split, n, **common)
    case "swap_pairs":
        write_swap_pairs(Path(snakemake.output.tsv), split, n, **common, boxes_path=Path(snakemake.output.boxes))
log.info("%s: wrote %s split %s with %d items", snakemake.rule, snakemake.params.format, split, n)
