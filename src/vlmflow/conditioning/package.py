"""The pretrained tiny Z-Image pipeline and Qwen3-VL as the zoo ships them: `pipeline/` (a
`ZImagePipeline` folder) and `vlm/` (Qwen3-VL + processor) in the zoo's dtype, evaluated as shipped,
with a `provenance.json` (config, commit, corpus digest, each part's curve and weights digest, the
first steps' digests, the evaluation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import ZImagePipeline
from tqdm.auto import tqdm
from transformers import PreTrainedModel, ProcessorMixin

from vlmflow.conditioning.caption_following import caption_colour, caption_following
from vlmflow.conditioning.extract import reference_hidden_states
from vlmflow.conditioning.generate import generate, load_pipeline
from vlmflow.conditioning.pretrain import CAPTION_REQUEST, Scenes, load_parts, pipeline_of
from vlmflow.core.models import load_vlm
from vlmflow.core.settings import ZIMAGE_PARTS, ImageSettings
from vlmflow.zoo.provenance import DTYPES, current_commit, file_digest, folder_digest, training_curve

# Where each part's weights lie in the shipped folder.
WEIGHTS = {
    "text_encoder": "pipeline/text_encoder/model.safetensors",
    "vae": "pipeline/vae/diffusion_pytorch_model.safetensors",
    "transformer": "pipeline/transformer/diffusion_pytorch_model.safetensors",
    "vlm": "vlm/model.safetensors",
}


def weight_digests(folder: str | Path) -> dict[str, str]:
    """The sha256 of each part's shipped weights file."""
    return {part: file_digest(Path(folder) / path) for part, path in WEIGHTS.items()}


def export(random_dir: str | Path, trained: dict[str, str | Path], out_dir: Path, dtype: str) -> None:
    """Write `out_dir/pipeline` and `out_dir/vlm` from the trained parts, cast to `dtype`."""
    parts = load_parts(random_dir, trained, with_vlm=True)
    pipeline: ZImagePipeline = pipeline_of(parts).to(DTYPES[dtype])
    pipeline.save_pretrained(out_dir / "pipeline")
    parts.vlm.to(DTYPES[dtype]).save_pretrained(out_dir / "vlm")
    parts.processor.save_pretrained(out_dir / "vlm")


@torch.no_grad()
def evaluate_pipeline(
    pipeline: ZImagePipeline, captions: list[str], height: int, width: int, steps: int
) -> dict[str, Any]:
    """How often the reference encoder's picture of each caption (noise seeded by its index)
    shows the named colour as the dominant one, and the colour on the named side."""
    pipeline.set_progress_bar_config(disable=True)
    rows = []
    for index, text in enumerate(tqdm(captions, desc="caption following", unit="caption")):
        embeds = reference_hidden_states(pipeline.text_encoder, pipeline.tokenizer, text)
        image, _ = generate(pipeline, embeds, None, ImageSettings(height=height, width=width, steps=steps, seed=index))
        rows.append(caption_following(image, text))
    return {
        "n": len(rows),
        "colour_follows_caption": sum(r["colour_follows_caption"] for r in rows) / len(rows),
        "side_follows_caption": sum(r["side_follows_caption"] for r in rows) / len(rows),
    }


@torch.no_grad()
def evaluate_captioning(vlm: PreTrainedModel, processor: ProcessorMixin, scenes: Scenes) -> dict[str, Any]:
    """The VLM's greedy caption of each picture against its true caption: exact match, and the
    object's colour named right."""
    user = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": CAPTION_REQUEST}]}
    prompt = processor.apply_chat_template([user], add_generation_prompt=True)
    exact = colour = 0
    for index, truth in enumerate(tqdm(scenes.captions, desc="captioning", unit="picture")):
        inputs = processor(text=[prompt], images=[scenes.image(index)], return_tensors="pt")
        output = vlm.generate(**inputs, max_new_tokens=24, do_sample=False)
        answer = processor.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
        exact += answer == truth
        colour += caption_colour(answer) == caption_colour(truth)
    n = len(scenes.captions)
    return {"n": n, "exact_match": exact / n, "colour_named": colour / n}


def evaluate_shipped(out_dir: Path, val: Scenes, eval_settings: dict[str, Any]) -> dict[str, Any]:
    """The shipped folders, loaded as the default loads them: caption following of the reference
    pipeline on the val captions, and the VLM's captions of the val pictures."""
    pipeline = load_pipeline(out_dir / "pipeline", "cpu")
    size = val.pixels.shape[-1]
    following = evaluate_pipeline(pipeline, val.captions, size, size, eval_settings["steps"])
    vlm, processor = load_vlm(out_dir / "vlm", device="cpu")
    return {"caption_following": following, "captioning": evaluate_captioning(vlm, processor, val)}


def provenance(
    model: str,
    config: dict[str, Any],
    folder: Path,
    corpus: Path,
    logs: dict[str, Path],
    first_steps_record: dict[str, Any],
    evaluation: dict[str, Any],
) -> dict[str, Any]:
    digests = weight_digests(folder)
    trained = {}
    for part in ZIMAGE_PARTS:
        batch = config[part]["batch_size"]
        curve = training_curve(logs[part], batch)
        trained[part] = {
            "steps": config[part]["steps"],
            "samples": config[part]["steps"] * batch,
            "final_loss": curve[-1]["loss"] if curve else None,
            "training_curve": curve,
            "weights_sha256": digests[part],
        }
    return {
        "model": model,
        "config": config,
        "commit": current_commit(),
        "corpus_sha256": folder_digest(corpus),
        "parts": trained,
        "first_steps": first_steps_record,
        "evaluation": evaluation,
    }
