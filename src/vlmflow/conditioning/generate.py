"""Images from conditioning recipes through diffusers' Z-Image pipeline (seed 003).

`ZImagePipeline` takes `prompt_embeds` as a list of (tokens, dim) tensors of any length, the
form its own Qwen3-4B encoding has, so each recipe's embeddings go in as they are. Every image
of an experiment starts from the same seeded noise: what differs between two pictures is the
conditioning, and `reference.png`, the reference encoder's picture of the prompt from that noise,
is what each is measured against. Each image is written with its metadata (`<name>.png`,
`<name>.json`) as soon as it is made, so an interrupted experiment resumes at the first image
missing or made from other settings or models; `metadata.json` lists them all, in the seed's
format (`results`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline, ZImagePipeline
from PIL import Image
from tqdm.auto import tqdm

from vlmflow.conditioning.caption_following import caption_following, dominant_colour
from vlmflow.conditioning.recipe import ConditioningSpec, Encoders, condition
from vlmflow.core.io import atomic_write, read_json, write_json
from vlmflow.core.models import load_vlm, pick_device
from vlmflow.core.settings import ImageSettings

REFERENCE_IMAGE = "reference.png"  # the reference encoder's image of the prompt, every experiment's baseline


def load_pipeline(path: str | Path, device: str = "auto") -> ZImagePipeline:
    """A Z-Image pipeline folder (`model_index.json` + components), safetensors only, offline."""
    path = Path(path)
    if not (path / "model_index.json").is_file():
        raise FileNotFoundError(
            f"{path}: not a diffusers pipeline (no model_index.json); set conditioning.models.<name>.pipeline "
            "to a local folder such as a downloaded Tongyi-MAI/Z-Image-Turbo"
        )
    torch_device, dtype = pick_device(device)
    pipeline = DiffusionPipeline.from_pretrained(path, dtype=dtype, use_safetensors=True, local_files_only=True)
    if not isinstance(pipeline, ZImagePipeline):
        raise TypeError(f"{path}: a {type(pipeline).__name__}; the VL-conditioning study drives a ZImagePipeline")
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(torch_device)


def load_encoders(
    pipeline_path: str | Path,
    vlm_path: str | Path,
    image_path: str | Path | None,
    device: str = "auto",
    trust_remote_code: bool = False,
) -> tuple[ZImagePipeline, Encoders]:
    """The pipeline (its text encoder is the reference) and the VLM with the reference image."""
    pipeline = load_pipeline(pipeline_path, device)
    vlm, processor = load_vlm(vlm_path, device=device, trust_remote_code=trust_remote_code)
    width, ref_width = (
        vlm.config.get_text_config().hidden_size,
        pipeline.text_encoder.config.hidden_size,
    )
    if width != ref_width:
        raise ValueError(
            f"{vlm_path}: hidden size {width}, but the pipeline's text encoder has {ref_width}; "
            "the DiT reads embeddings of its encoder's width"
        )
    image = None
    if image_path is not None:
        with Image.open(image_path) as opened:
            image = opened.convert("RGB")
    return pipeline, Encoders(pipeline.text_encoder, pipeline.tokenizer, vlm, processor, image)


def load_job(
    spec: dict[str, Any], model: dict[str, Any]
) -> tuple[ZImagePipeline, Encoders, ImageSettings, dict[str, Any]]:
    """A generating job's pipeline and encoders, its sampling settings and the models' resume key,
    from its params (`spec`: the settings, `model`: the folders)."""
    pipeline, encoders = load_encoders(
        model["pipeline"], model["vlm"], spec["image"], spec["device"], model["trust_remote_code"]
    )
    settings = ImageSettings(**{k: spec[k] for k in ImageSettings.__dataclass_fields__})
    return pipeline, encoders, settings, resume_key(model["pipeline"], model["vlm"], spec["image"])


def generate(
    pipeline: ZImagePipeline,
    embeds: torch.Tensor,
    negative: torch.Tensor | None,
    settings: ImageSettings,
) -> tuple[Image.Image, float]:
    """One image from `embeds` (and `negative` under CFG) and the seconds it took."""
    dtype = pipeline.transformer.dtype
    start = time.perf_counter()
    image = pipeline(
        prompt_embeds=[embeds.to(pipeline.device, dtype)],
        negative_prompt_embeds=[negative.to(pipeline.device, dtype)] if negative is not None else None,
        height=settings.height,
        width=settings.width,
        num_inference_steps=settings.steps,
        guidance_scale=settings.guidance_scale,
        generator=torch.Generator(device="cpu").manual_seed(settings.seed),
    ).images[0]
    return image, time.perf_counter() - start


def pixel_distance(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute pixel difference on a 0..1 scale."""
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean() / 255)


def image_metadata(
    name: str, prompt: str, spec: ConditioningSpec, stats: dict[str, Any], seconds: float
) -> dict[str, Any]:
    """The seed's metadata.json fields first, then what this workflow adds; the VLM's fields are
    null for the reference encoder alone (alpha 0)."""
    vl = spec.alpha > 0
    return {
        "name": name,
        "image": f"{name}.png",
        "vl_shape": stats["vl_shape"],
        "vl_std": stats["vl_std"],
        "token_selection": spec.source.token_selection if vl else None,
        "normalization_mode": spec.normalization if vl else None,
        "blended_std": stats["blended_std"],
        "generation_time": seconds,
        "alpha": spec.alpha,
        "hidden_layer": spec.source.hidden_layer if vl else None,
        "prompt": prompt,
        "vl_text": spec.source.text(prompt) if vl else None,
        **{k: v for k, v in stats.items() if k not in ("vl_shape", "vl_std", "blended_std")},
        "spec": spec.as_dict(),
    }


def picture_colour(picture: Image.Image | None) -> str | None:
    """The dominant colour of the picture the VLM sees (None without one), measured once per job."""
    return dominant_colour(picture)[0] if picture is not None else None


def following(image: Image.Image, prompt: str, image_colour: str | None) -> dict[str, Any]:
    """Whether a picture shows what the prompt names (`caption_following`) and whether its
    dominant colour is instead `image_colour`, that of the picture the VLM saw (`colour_follows_image`)."""
    measure = caption_following(image, prompt)
    return {**measure, "image_colour": image_colour, "colour_follows_image": measure["dominant_colour"] == image_colour}


def resume_key(pipeline_path: str | Path, vlm_path: str | Path, image_path: str | Path | None) -> dict[str, Any]:
    """What a kept image must share with this run besides prompt, recipe and sampling: the two
    model folders (path and when their index was written, so a rebuilt model counts as another)
    and the reference image's bytes."""

    def folder(path: str | Path, index: str) -> dict[str, Any]:
        return {"path": str(path), "written_ns": (Path(path) / index).stat().st_mtime_ns}

    image = hashlib.sha256(Path(image_path).read_bytes()).hexdigest() if image_path else None
    return {
        "pipeline": folder(pipeline_path, "model_index.json"),
        "vlm": folder(vlm_path, "config.json"),
        "image_sha256": image,
    }


def negative_embeddings(encoders: Encoders, spec: ConditioningSpec, settings: ImageSettings) -> torch.Tensor | None:
    """The reference encoder's embeddings of the negative prompt, under CFG only."""
    if settings.guidance_scale <= 0:
        return None
    return encoders.reference(settings.negative_prompt, spec.reference_layer)


def run_experiment(
    pipeline: ZImagePipeline,
    encoders: Encoders,
    prompt: str,
    outputs: dict[str, ConditioningSpec],
    settings: ImageSettings,
    out_dir: str | Path,
    models: dict[str, Any],
    log: logging.Logger,
) -> dict[str, Any]:
    """Generate `reference.png` (the reference encoder alone) and each output's image from the
    same noise, keeping an image made before from the same prompt, recipe, sampling and `models`
    (`resume_key`); measure each against the reference image and the prompt; write metadata.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reference_spec = ConditioningSpec(alpha=0.0)
    reference_embeds = condition(encoders, prompt, reference_spec)[0]
    image_colour = picture_colour(encoders.image)
    reference_image, _ = generate(
        pipeline, reference_embeds, negative_embeddings(encoders, reference_spec, settings), settings
    )
    save_png(reference_image, out_dir / REFERENCE_IMAGE)
    results = []
    for name, spec in tqdm(outputs.items(), desc="images", unit="image"):
        png, meta = out_dir / f"{name}.png", out_dir / f"{name}.json"
        made_from = json.loads(
            json.dumps(
                {
                    "prompt": prompt,
                    "spec": spec.as_dict(),
                    "settings": asdict(settings),
                    "models": models,
                }
            )
        )  # as it reads back from JSON
        if png.is_file() and meta.is_file() and read_json(meta).get("made_from") == made_from:
            log.info("%s: kept (made from the same settings)", name)
            results.append(read_json(meta))
            continue
        try:
            embeds, stats = condition(encoders, prompt, spec)
        except ValueError as error:  # a recipe this model or prompt cannot serve: say which one
            raise ValueError(f"output {name!r}: {error}") from error
        image, seconds = generate(pipeline, embeds, negative_embeddings(encoders, spec, settings), settings)
        entry = image_metadata(name, prompt, spec, stats, seconds)
        entry |= {
            "pixel_distance_to_reference": pixel_distance(image, reference_image),
            **following(image, prompt, image_colour),
            "made_from": made_from,
        }
        save_png(image, png)
        write_json(meta, entry)
        log.info(
            "%s: %s tokens, std %.3g, cosine to reference %.3f, %.2fs",
            name,
            stats["blended_shape"][0],
            stats["blended_std"],
            stats["cosine_to_reference"],
            seconds,
        )
        results.append(entry)
    metadata = {
        "prompt": prompt,
        "settings": asdict(settings),
        "reference_image": REFERENCE_IMAGE,
        "reference_following": following(reference_image, prompt, image_colour),
        "results": results,
    }
    write_json(out_dir / "metadata.json", metadata)
    return metadata


def save_png(image: Image.Image, path: Path) -> None:
    with atomic_write(path, "wb") as handle:
        image.save(handle, format="PNG")
