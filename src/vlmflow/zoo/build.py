"""Build a tiny checkpoint of a real VLM family from a config spec and save it like a hub model.

A spec (one entry of `models.<name>.build` in config.yaml) names the family, the seed, the
tokenizer's vocabulary size, the image size and the `text` / `vision` sub-config overrides. The
same spec and corpus give byte-identical weights and tokenizer files. Each family's builder is a
module of `vlmflow.zoo.families`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from vlmflow.core.io import atomic_directory

# family -> its builder module in vlmflow.zoo.families (imported on use: each pulls its own classes)
FAMILIES = (
    "qwen2_vl",
    "qwen2_5_vl",
    "qwen3_vl",
    "internvl",
    "idefics3",
    "smolvlm",
    "llava",
    "llava_onevision",
    "gemma3",
    "paligemma",
)


def build_checkpoint(spec: dict[str, Any], corpus_lines: list[str], out_dir: str | Path) -> None:
    """Build the model in `spec` with seeded random weights and save model + processor to `out_dir`.

    The checkpoint is assembled in a temporary sibling folder and renamed into place, so a killed
    build never leaves a folder that looks like a checkpoint.
    """
    family = spec["family"]
    if family not in FAMILIES:
        raise ValueError(f"unknown model family '{family}'; known: {', '.join(sorted(FAMILIES))}")
    builder = importlib.import_module(f"vlmflow.zoo.families.{family}")
    torch.manual_seed(spec.get("seed", 0))
    model, processor = builder.build(spec, corpus_lines)
    tokenizer = processor.tokenizer
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.do_sample = False

    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
