"""Dataset caching: upstream formats (VQAv2, TextVQA, Kvasir-VQA, swap pairs) to Record JSONL."""

from __future__ import annotations

from vlmflow.data.cache import FORMAT_READERS, cache_dataset, read_dataset
from vlmflow.data.kvasir import read_kvasir
from vlmflow.data.select import load_case_ids, select
from vlmflow.data.swap_pairs import read_swap_pairs
from vlmflow.data.textvqa import read_textvqa
from vlmflow.data.vqav2 import read_vqav2

__all__ = [
    "FORMAT_READERS",
    "cache_dataset",
    "load_case_ids",
    "read_dataset",
    "read_kvasir",
    "read_swap_pairs",
    "read_textvqa",
    "read_vqav2",
    "select",
]
