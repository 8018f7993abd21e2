"""The foveated parts' pretraining: a multi-token VLM trained on the shapes corpus, shipped as its parts.

Seed 001 builds its foveated model from pretrained parts (facebook/dinov2-small, SmolLM2-135M). The
tiny zoo's stand-ins are pretrained together, as the encoder and language model of the seed's B1
baseline (pooled patch tokens, no query) on a shapes corpus of its own seed, then shipped as two
ordinary folders, `vision/` (Dinov2Model) and `language/` (LlamaForCausalLM), which the sweep's
runs join with a new connector and queries. The B1 connector stays behind, as a hub encoder's
pretraining head does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from vlmflow.core.io import read_json, read_jsonl
from vlmflow.core.settings import FoveatedSettings
from vlmflow.foveated.data import FrameSample
from vlmflow.foveated.model import from_parts, load_frame_lm
from vlmflow.foveated.trainer import FoveatedTrainer
from vlmflow.zoo.foveated import save_parts
from vlmflow.zoo.provenance import DTYPES, file_digest, state_digest, training_curve

PARTS = ("vision", "language")
EVAL_DATASET = "shapes_val"
WEIGHTS = "model.safetensors"


def corpus_digest(jsonl: str | Path) -> str:
    """One digest of a shapes JSONL and every frame it names, in order (contents, not paths' times)."""
    jsonl = Path(jsonl)
    digest = hashlib.sha256(jsonl.read_bytes())
    for row in read_jsonl(jsonl):
        for frame in row["frames"]:
            digest.update(hashlib.sha256((jsonl.parent / frame).read_bytes()).digest())
    return digest.hexdigest()


def first_steps(
    parts: Mapping[str, str | Path],
    train: list[FrameSample],
    val: list[FrameSample],
    settings: FoveatedSettings,
    steps: int,
) -> list[dict[str, Any]]:
    """The weights' digest at step 0 and after each of the run's first `steps` optimizer steps, on
    one CPU thread: what rebuilding the parts with the same config must reproduce."""
    model, tokenizer, processor = from_parts(parts["vision"], parts["language"], asdict(settings), settings.seed)
    trainer = FoveatedTrainer(model, tokenizer, processor, train, val, settings, {}, torch.device("cpu"))
    rows = [{"step": 0, "weights_sha256": state_digest(trainer.model)}]
    for _ in range(steps):
        row = trainer.train_step()
        rows.append({"step": row["step"], "loss": row["loss"], "weights_sha256": state_digest(trainer.model)})
    return rows


def export_parts(model_dir: str | Path, folder: Path, dtype: str) -> None:
    """The trained multi-token VLM's encoder (with its image processor) and language model (with
    its tokenizer) as `folder/vision` and `folder/language`, floating-point weights in `dtype`."""
    model, tokenizer, processor = load_frame_lm(model_dir)
    vision, language = model.vision.to(DTYPES[dtype]), model.language.to(DTYPES[dtype])
    save_parts(vision, processor, language, tokenizer, folder)


def evaluation(row: Mapping[str, Any], n: int) -> dict[str, dict[str, Any]]:
    """One evaluation row of the run (evals.jsonl) as the zoo's provenance holds it: exact match on
    the fixed val samples, overall and per kind (video, image, text)."""
    kinds = {key.split("/", 1)[1]: value for key, value in row.items() if key.startswith("val_accuracy/")}
    return {
        EVAL_DATASET: {"metric": "exact_match", "n": n, "accuracy": row["val_accuracy"], "per_question_type": kinds}
    }


def provenance(
    *,
    model: str,
    config: Mapping[str, Any],
    parts_dir: Path,
    corpus: Path,
    evals: Sequence[Mapping[str, Any]],
    train_log: Path,
    first_steps_record: Mapping[str, Any],
    val_samples: int,
) -> dict[str, Any]:
    """The provenance.json of the shipped parts: the zoo's fields (docs/pretraining.md), each part's
    weight digest, and the evaluation at every `eval_every` steps (the pretraining figure's points)."""
    curve = training_curve(train_log, config["settings"]["batch_size"])
    return {
        "model": model,
        "samples": evals[-1]["samples"],
        "dtype": read_json(parts_dir / "language" / "config.json")["dtype"],
        "weights_sha256": {part: file_digest(parts_dir / part / WEIGHTS) for part in PARTS},
        "commit": first_steps_record["commit"],
        "data_sha256": corpus_digest(corpus),
        "config": dict(config),
        "first_steps": dict(first_steps_record),
        "final_loss": curve[-1]["loss"] if curve else None,
        "evaluation": evaluation(evals[-1], val_samples),
        "evaluations": [{"samples": row["samples"], "evaluation": evaluation(row, val_samples)} for row in evals],
        "training_curve": curve,
    }
