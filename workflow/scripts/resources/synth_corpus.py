"""Glue for rule synth_corpus: the text the zoo's tokenizers are trained on."""

from vlmflow.core.io import atomic_write
from vlmflow.core.scripting import log_to
from vlmflow.synth.corpus import corpus_lines

log = log_to(snakemake.log[0])
lines = corpus_lines()
with atomic_write(snakemake.output.corpus) as handle:
    handle.writelines(line + "\n" for line in lines)
log.info("corpus: %d lines", len(lines))
