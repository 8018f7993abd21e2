"""vlmflow: cached, resumable vision-language-model experiments as a Snakemake workflow."""

__version__ = "0.1.0"
