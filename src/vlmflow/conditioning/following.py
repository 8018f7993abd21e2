"""Caption following across many captions: every recipe's picture of every caption (all from the
same seeded noise), each measured against its caption and against the picture the VLM saw.

This is the seed's "prompt adherence" as a number: the reference encoder's pictures show how well
the pipeline follows captions at all, and each VL recipe how much of that it keeps (text tokens)
or trades for the VLM's picture (image tokens). The rows are written as they are made
(`pictures.jsonl`, resumable) with the pictures under `pictures/<recipe>/<i>.png`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from diffusers import ZImagePipeline
from tqdm.auto import tqdm

from vlmflow.conditioning.generate import following, generate, negative_embeddings, picture_colour, save_png
from vlmflow.conditioning.recipe import ConditioningSpec, Encoders, condition
from vlmflow.core.io import read_jsonl
from vlmflow.core.resumable import ResumableJsonl
from vlmflow.core.settings import ImageSettings


def read_captions(folder: str | Path) -> list[str]:
    """The captions of an imagefolder (`metadata.jsonl`, the `text` of each row)."""
    path = Path(folder) / "metadata.jsonl"
    captions = []
    for number, row in enumerate(read_jsonl(path), 1):
        if not isinstance(row.get("text"), str) or not row["text"].strip():
            raise ValueError(f"{path}: row {number} has no caption (a non-empty `text`)")
        captions.append(row["text"])
    if not captions:
        raise ValueError(f"{path}: no captions")
    return captions


def run_following(
    pipeline: ZImagePipeline,
    encoders: Encoders,
    captions: list[str],
    recipes: dict[str, ConditioningSpec],
    settings: ImageSettings,
    out: Path,
    models: dict[str, Any],
    log: logging.Logger,
) -> list[dict[str, Any]]:
    """Make and measure each (recipe, caption) picture, resuming after the last one written;
    publish `out` (pictures.jsonl) when all are there."""
    ids = [f"{recipe}/{i}" for recipe in recipes for i in range(len(captions))]
    fingerprint = {
        "captions": captions,
        "recipes": {name: spec.as_dict() for name, spec in recipes.items()},
        "settings": asdict(settings),
        "models": models,
    }
    writer = ResumableJsonl(out, fingerprint, expected_ids=ids)
    if writer.rows:
        log.info("resuming after %d of %d pictures", len(writer.rows), len(ids))
    image_colour = picture_colour(encoders.image)
    for question_id in tqdm(ids[len(writer.rows) :], initial=len(writer.rows), total=len(ids), desc="pictures"):
        recipe, index = question_id.rsplit("/", 1)
        caption = captions[int(index)]
        try:
            embeds, stats = condition(encoders, caption, recipes[recipe])
        except ValueError as error:
            raise ValueError(f"recipe {recipe!r}, caption {caption!r}: {error}") from error
        negative = negative_embeddings(encoders, recipes[recipe], settings)
        image, seconds = generate(pipeline, embeds, negative, settings)
        picture = f"pictures/{recipe}/{index}.png"
        save_png(image, out.parent / picture)
        writer.append(
            [
                {
                    "question_id": question_id,
                    "recipe": recipe,
                    "caption": caption,
                    "picture": picture,
                    "cosine_to_reference": stats["cosine_to_reference"],
                    "generation_time": seconds,
                    **following(image, caption, image_colour),
                }
            ]
        )
    writer.finish()
    return writer.rows
