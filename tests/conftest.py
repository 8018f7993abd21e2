"""Shared fixtures: a tiny corpus, tiny checkpoints of each zoo family, and image records."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from vlmflow.core.records import Record
from vlmflow.synth.kvasir import write_kvasir
from vlmflow.synth.swap_pairs import write_swap_pairs
from vlmflow.synth.textvqa import write_textvqa
from vlmflow.synth.vqav2 import write_vqav2
from vlmflow.zoo.build import build_checkpoint

COLORS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (30, 60, 220), "yellow": (230, 210, 30)}

CORPUS = [f"What color is the {shape}? {color}" for shape in ("square", "circle", "triangle") for color in COLORS] + [
    "How many circles are there? 1 2 3 4 5",
    "Answer the question using a single word or phrase.",
    "yes no",
]

TINY_SPECS = {
    "qwen2_vl": {
        "family": "qwen2_vl",
        "seed": 0,
        "vocab_size": 320,
        "image_size": 56,
        "vision": {"depth": 1, "embed_dim": 16, "num_heads": 2, "mlp_ratio": 2},
        "text": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
        },
    },
    "llava": {
        "family": "llava",
        "seed": 0,
        "vocab_size": 320,
        "image_size": 56,
        "vision": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2},
        "text": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
        },
    },
}

# One tiny spec per model family the zoo builds (a few visual tokens per 56 px image each).
FAMILY_TEXT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
}
QWEN_VISION = {"depth": 2, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2}
VIT_VISION = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
FAMILY_SPECS = {
    "qwen2_vl": TINY_SPECS["qwen2_vl"],
    "qwen2_5_vl": {"family": "qwen2_5_vl", "image_size": 56, "vision": QWEN_VISION},
    "qwen3_vl": {"family": "qwen3_vl", "image_size": 64, "vision": QWEN_VISION},
    "internvl": {"family": "internvl", "image_size": 56, "vision": VIT_VISION},
    "idefics3": {"family": "idefics3", "image_size": 56, "vision": {**VIT_VISION, "hidden_size": 32}},
    "smolvlm": {"family": "smolvlm", "image_size": 128, "vision": {**VIT_VISION, "hidden_size": 32}},
    "llava": TINY_SPECS["llava"],
    "llava_onevision": {"family": "llava_onevision", "image_size": 56, "vision": VIT_VISION},
    "gemma3": {"family": "gemma3", "image_size": 56, "vision": {**VIT_VISION, "hidden_size": 32}},
    "paligemma": {"family": "paligemma", "image_size": 56, "vision": {**VIT_VISION, "hidden_size": 32}},
}
for _spec in FAMILY_SPECS.values():
    _spec.setdefault("seed", 0)
    _spec.setdefault("vocab_size", 320)
    _spec.setdefault("text", FAMILY_TEXT)


@pytest.fixture(scope="session")
def family_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny checkpoint per model family, built once per test session."""
    root = tmp_path_factory.mktemp("families")
    for family, spec in FAMILY_SPECS.items():
        build_checkpoint(spec, CORPUS, root / family)
    return {family: root / family for family in FAMILY_SPECS}


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny checkpoint per zoo family, built once per test session."""
    root = tmp_path_factory.mktemp("zoo")
    paths = {}
    for family, spec in TINY_SPECS.items():
        paths[family] = root / family
        build_checkpoint(spec, CORPUS, paths[family])
    return paths


def make_records(folder: Path, n: int, dataset: str = "toy") -> list[Record]:
    """`n` one-square images with a colour question each."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(COLORS)
    records = []
    for i in range(n):
        color = names[i % len(names)]
        image = Image.new("RGB", (56, 56), (240, 240, 240))
        ImageDraw.Draw(image).rectangle([8 + i % 5, 10, 40, 42], fill=COLORS[color])
        path = folder / f"{i:04d}.png"
        image.save(path)
        records.append(
            Record(
                question_id=str(i),
                image=str(path),
                question="What color is the square?",
                answers=[color] * 10,
                dataset=dataset,
                answer_type="other",
                question_type="what color is the",
            )
        )
    return records


RAW_SIZE = 48  # image side of the `raw` fixture's synthetic data
RAW_ITEMS = 5  # images (swap pairs: pairs) per format in the `raw` fixture


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small val split of every upstream format, written by the synthetic generators:
    vqav2/, textvqa/, kvasir.parquet, swap.tsv. Copy it before breaking it."""
    root = tmp_path_factory.mktemp("raw")
    write_vqav2(root / "vqav2", "val", RAW_ITEMS, 0, image_size=RAW_SIZE)
    write_textvqa(root / "textvqa", "val", RAW_ITEMS, 0, image_size=RAW_SIZE)
    write_kvasir(root / "kvasir.parquet", "val", RAW_ITEMS, 0, image_size=RAW_SIZE)
    write_swap_pairs(root / "swap.tsv", "val", RAW_ITEMS, 0, image_size=RAW_SIZE)
    return root


def raw_specs(root: Path) -> dict[str, dict]:
    """The `raw` fixture's four datasets as config entries (`datasets:` in config.yaml)."""
    return {
        "vqav2_val": {
            "format": "vqav2",
            "questions": str(root / "vqav2/v2_OpenEnded_mscoco_val2014_questions.json"),
            "annotations": str(root / "vqav2/v2_mscoco_val2014_annotations.json"),
            "images": str(root / "vqav2/val2014"),
        },
        "textvqa_val": {
            "format": "textvqa",
            "json": str(root / "textvqa/TextVQA_0.5.1_val.json"),
            "images": str(root / "textvqa/train_images"),
        },
        "kvasir": {"format": "kvasir", "parquet": str(root / "kvasir.parquet")},
        "swap": {"format": "swap_pairs", "tsv": str(root / "swap.tsv")},
    }


def tsv_rows(path: Path) -> list[list[str]]:
    """The rows of a swap-pair TSV (its base64 image fields exceed csv's default field limit)."""
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle, delimiter="\t"))


def write_tsv(path: Path, rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, delimiter="\t", lineterminator="\n").writerows(rows)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` need a CUDA device: without one they are deselected (and counted as such),
    so a CPU machine runs every test it can and skips none."""
    if torch.cuda.is_available():
        return
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if gpu:
        config.hook.pytest_deselected(items=gpu)
        items[:] = [item for item in items if not item.get_closest_marker("gpu")]
