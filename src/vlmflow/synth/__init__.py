"""Deterministic, seeded synthetic raw data in the real upstream formats (the embedded default)."""

from __future__ import annotations

from vlmflow.synth.corpus import corpus_lines
from vlmflow.synth.kvasir import write_kvasir
from vlmflow.synth.swap_pairs import write_swap_pairs
from vlmflow.synth.textvqa import write_textvqa
from vlmflow.synth.videos import write_shape_videos
from vlmflow.synth.vqav2 import write_vqav2

__all__ = [
    "corpus_lines",
    "write_kvasir",
    "write_shape_videos",
    "write_swap_pairs",
    "write_textvqa",
    "write_vqav2",
]
