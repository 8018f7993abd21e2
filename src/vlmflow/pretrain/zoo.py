"""A shipped zoo checkpoint: its weights exported in half precision, digests and provenance.

Each scale of a pretrained model is an ordinary Auto-loadable checkpoint folder (config,
`model.safetensors`, processor and tokenizer files) plus `provenance.json`: the pretraining config,
the commit, the corpus digest, the samples seen, the evaluation at that scale, the training curve
up to it and the digests of its weights and of the run's first steps.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from vlmflow.core.io import atomic_directory, read_json, read_jsonl
from vlmflow.zoo.provenance import DTYPES, file_digest, training_curve

WEIGHTS = "model.safetensors"
PROVENANCE = "provenance.json"
TRAINING_ONLY = ("trainer_state", "train_log.jsonl", "vlmflow_train.json", "adapter")


def corpus_digest(caches: Iterable[str | Path]) -> str:
    """One digest of the training records, in order: each cached record with its image's content
    hash but not its modification time, so the same corpus written again has the same digest."""
    digest = hashlib.sha256()
    for path in caches:
        for record in read_jsonl(path):
            if record.get("image_file"):
                record["image_file"] = {k: v for k, v in record["image_file"].items() if k != "mtime_ns"}
            digest.update(json.dumps(record, sort_keys=True).encode() + b"\n")
    return digest.hexdigest()


def export_weights(checkpoint: str | Path, out_dir: str | Path, dtype: str) -> None:
    """Copy a checkpoint's model files to `out_dir` with its floating-point weights cast to `dtype`
    (integer buffers unchanged) and the config's dtype set to match; training state (optimizer,
    log, adapter) and a shipped scale's provenance stay behind. A training checkpoint exported in
    the zoo's dtype is a shipped scale; a shipped scale exported in float32 is where a continued
    pretraining (`init_from`) starts."""
    checkpoint = Path(checkpoint)
    with atomic_directory(out_dir) as tmp:
        for item in checkpoint.iterdir():
            if item.name in (*TRAINING_ONLY, WEIGHTS, PROVENANCE):
                continue
            if item.is_dir():
                shutil.copytree(item, tmp / item.name)
            else:
                shutil.copy2(item, tmp / item.name)
        tensors = load_file(checkpoint / WEIGHTS)  # {name: tensor}
        cast = {k: v.to(DTYPES[dtype]) if v.is_floating_point() else v for k, v in tensors.items()}
        save_file(cast, tmp / WEIGHTS, metadata={"format": "pt"})
        config = json.loads((tmp / "config.json").read_text())
        config["dtype"] = dtype
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def evaluation(metrics_files: Iterable[str | Path]) -> dict[str, dict[str, Any]]:
    """{eval dataset: overall, per question type and (swap pairs) both-correct accuracy}."""
    results = {}
    for path in metrics_files:
        metrics = read_json(path)
        dataset = metrics["experiment"].rsplit(".", 1)[-1]
        results[dataset] = {
            "metric": metrics["metric"],
            "n": metrics["n"],
            "accuracy": metrics["accuracy"],
            "per_question_type": {k: v["accuracy"] for k, v in metrics["per_question_type"].items()},
            **({"both_correct": metrics["both_correct"]} if "both_correct" in metrics else {}),
        }
    return results


def provenance(
    *,
    model: str,
    config: Mapping[str, Any],
    samples: int,
    weights_dir: Path,
    corpus: Iterable[str | Path],
    metrics_files: Iterable[str | Path],
    first_steps: Mapping[str, Any],
    train_log: Path | None,
    samples_per_step: int,
    vision_from: Path | None = None,
    init_from: Path | None = None,
    init_origin: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The provenance.json of one scale (docs/pretraining.md, Provenance); `vision_from`: the
    exported weights whose vision tower the model started from; `init_from`: the weights a
    continued pretraining started from, with the model and samples they come from (`init_origin`,
    or the folder's own provenance when it is a shipped scale)."""
    curve = training_curve(train_log, samples_per_step)
    record = {
        "model": model,
        "samples": samples,
        "dtype": read_json(weights_dir / "config.json")["dtype"],
        "weights_sha256": file_digest(weights_dir / WEIGHTS),
        "commit": first_steps["commit"],  # the checkout the pretraining ran in
        "data_sha256": corpus_digest(corpus),
        "config": dict(config),
        "first_steps": dict(first_steps),
        "final_loss": curve[-1]["loss"] if curve else None,
        "evaluation": evaluation(metrics_files),
        "training_curve": curve,
    }
    if vision_from is not None:
        record["vision_from"] = {"weights": str(vision_from), "weights_sha256": file_digest(vision_from / WEIGHTS)}
    if init_from is not None:
        record["init_from"] = {"weights": str(init_from), "weights_sha256": file_digest(init_from / WEIGHTS)}
        if (init_from / PROVENANCE).is_file():
            source = read_json(init_from / PROVENANCE)
            init_origin = {"model": source["model"], "samples": source["samples"]}
        record["init_from"] |= dict(init_origin or {})
    return record


def package_scale(weights_dir: str | Path, out_dir: str | Path, record: Mapping[str, Any]) -> None:
    """The shipped scale: the exported weights folder plus its provenance.json."""
    with atomic_directory(out_dir) as tmp:
        shutil.copytree(weights_dir, tmp, dirs_exist_ok=True)
        (tmp / PROVENANCE).write_text(json.dumps(record, indent=2) + "\n")
