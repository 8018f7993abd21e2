"""Pretraining the tiny Z-Image pipeline and Qwen3-VL of the VL-conditioning study on captioned
scenes, each part by the objective its real counterpart was trained with:

- `text_encoder`: Qwen3 as a language model on the captions, read through the chat template the way
  Z-Image reads a prompt;
- `vae`: the autoencoder on the pictures (reconstruction + a small KL term); its latent shift and
  scaling factors are then set so the latents are centred with unit std, as Z-Image's are;
- `transformer`: rectified flow matching in that latent space, conditioned on the trained text
  encoder's `hidden_states[-2]` and following `ZImagePipeline`'s conventions: the model sees
  `x_t = sigma·noise + (1 - sigma)·x_0` at timestep `1 - sigma` (sigma shifted as its scheduler
  shifts it) and predicts `x_0 - noise`, the negative of the scheduler's velocity;
- `vlm`: Qwen3-VL learns to caption the pictures: its vision tower and merger, and (at its own
  rate, or not at all) its language model, which starts as the trained text encoder, as Qwen3-VL's
  grew out of Qwen3.

Every part trains with one resumable loop (`train_part`): seeded batches, AdamW with warm-up,
atomic checkpoints; a resumed run continues to the same weights.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, ZImagePipeline, ZImageTransformer2DModel
from PIL import Image
from tqdm.auto import tqdm
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    ProcessorMixin,
    Qwen3ForCausalLM,
)

from vlmflow.conditioning.extract import reference_hidden_states
from vlmflow.core.checkpoint import checkpoint_candidates, restore_latest, sample_order, save_state, truncate_log
from vlmflow.core.io import read_jsonl
from vlmflow.core.settings import ZIMAGE_PARTS, ZImagePartSettings
from vlmflow.zoo.provenance import state_digest

log = logging.getLogger("vlmflow")

CAPTION_REQUEST = "Describe the picture."  # what the VLM is asked while it learns to caption
SCHEDULER_SHIFT = 3.0  # the pipeline scheduler's shift: training sees the sigmas sampling visits


@dataclass(frozen=True)
class Scenes:
    """An imagefolder of captioned scenes: the pictures as (N, 3, H, W) in [-1, 1] and the rows."""

    pixels: torch.Tensor
    rows: list[dict[str, Any]]

    @property
    def captions(self) -> list[str]:
        return [row["text"] for row in self.rows]

    def image(self, index: int) -> Image.Image:
        array = ((self.pixels[index].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
        return Image.fromarray(array)


def read_scenes(folder: str | Path) -> Scenes:
    """Read an imagefolder (`metadata.jsonl` of `file_name` + `text`), naming the file and row of a bad one."""
    folder = Path(folder)
    metadata = folder / "metadata.jsonl"
    rows = read_jsonl(metadata)
    for number, row in enumerate(rows, 1):
        if not isinstance(row.get("text"), str) or "file_name" not in row:
            raise ValueError(f"{metadata}: row {number} needs a file_name and a text caption")
    pictures = []
    for number, row in enumerate(rows, 1):
        if not (folder / row["file_name"]).is_file():
            raise FileNotFoundError(f"{metadata}: row {number}: no picture {folder / row['file_name']}")
        with Image.open(folder / row["file_name"]) as image:
            pictures.append(np.asarray(image.convert("RGB")))
    if len({p.shape for p in pictures}) > 1:
        raise ValueError(f"{folder}: the pictures differ in size; pretraining needs one size")
    pixels = torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).float() / 127.5 - 1  # (N, 3, H, W)
    return Scenes(pixels, rows)


def chat_prompt(tokenizer: PreTrainedTokenizerBase, caption: str) -> str:
    """The caption as Z-Image hands a prompt to its text encoder."""
    messages = [{"role": "user", "content": caption}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=True)


def text_encoder_loss(
    encoder: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, captions: list[str]
) -> torch.Tensor:
    batch = tokenizer([chat_prompt(tokenizer, c) for c in captions], padding=True, return_tensors="pt")
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    return encoder(**batch, labels=labels).loss


def vae_loss(vae: AutoencoderKL, pixels: torch.Tensor, kl_weight: float) -> torch.Tensor:
    posterior = vae.encode(pixels).latent_dist
    reconstruction = vae.decode(posterior.sample()).sample  # (B, 3, H, W)
    return F.mse_loss(reconstruction, pixels) + kl_weight * posterior.kl().mean()


@torch.no_grad()
def posterior_means(vae: AutoencoderKL, pixels: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """(N, C, h, w) posterior means of the pictures, `chunk` at a time."""
    return torch.cat([vae.encode(pixels[i : i + chunk]).latent_dist.mean for i in range(0, len(pixels), chunk)])


def latent_factors(vae: AutoencoderKL, pixels: torch.Tensor) -> tuple[float, float]:
    """The shift and scaling that centre the latents (posterior means) and give them unit std."""
    means = posterior_means(vae, pixels)
    shift = means.mean().item()
    return shift, 1.0 / (means - shift).std().item()


def encode_latents(vae: AutoencoderKL, pixels: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) pipeline latents: posterior means, shifted and scaled by the VAE's config."""
    return (posterior_means(vae, pixels) - vae.config.shift_factor) * vae.config.scaling_factor


def caption_embeddings(
    encoder: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, captions: list[str]
) -> dict[str, torch.Tensor]:
    """Each distinct caption's (tokens, dim) conditioning, computed as the pipeline computes it."""
    return {c: reference_hidden_states(encoder, tokenizer, c) for c in sorted(set(captions))}


def shifted_sigmas(n: int, shift: float = SCHEDULER_SHIFT) -> torch.Tensor:
    """Uniform noise levels bent by the scheduler's shift (more time at high noise)."""
    u = torch.rand(n)
    return shift * u / (1 + (shift - 1) * u)


def flow_matching_loss(
    transformer: ZImageTransformer2DModel, latents: torch.Tensor, conditioning: list[torch.Tensor]
) -> torch.Tensor:
    noise = torch.randn_like(latents)  # (B, C, h, w)
    sigma = shifted_sigmas(len(latents))
    s = sigma[:, None, None, None]
    noisy = s * noise + (1 - s) * latents
    frames = list(noisy.unsqueeze(2).unbind(0))  # Z-Image's inputs: one (C, 1, h, w) per picture
    prediction = torch.stack(transformer(frames, 1 - sigma, conditioning, return_dict=False)[0]).squeeze(2)
    return F.mse_loss(prediction, latents - noise)


def caption_batch(processor: ProcessorMixin, images: list[Image.Image], captions: list[str]) -> dict[str, torch.Tensor]:
    """The VLM's captioning batch: the picture and the request, then the caption as the answer,
    with labels on the answer's tokens only (whichever side the tokenizer pads)."""
    user = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": CAPTION_REQUEST}]}
    prompt = processor.apply_chat_template([user], add_generation_prompt=True)
    full = [processor.apply_chat_template([user, {"role": "assistant", "content": c}]) for c in captions]
    batch = processor(text=full, images=images, padding=True, return_tensors="pt")
    prompt_length = int(processor(text=[prompt], images=images[:1], return_tensors="pt")["attention_mask"].sum())
    labels = torch.full_like(batch["input_ids"], -100)
    for row, mask in enumerate(batch["attention_mask"]):
        answer = mask.nonzero().squeeze(1)[prompt_length:]  # the real tokens after the prompt
        labels[row, answer] = batch["input_ids"][row, answer]
    return {**batch, "labels": labels}


def caption_loss(
    vlm: PreTrainedModel, processor: ProcessorMixin, images: list[Image.Image], captions: list[str]
) -> torch.Tensor:
    return vlm(**caption_batch(processor, images, captions)).loss


def train_part(
    module: torch.nn.Module,
    groups: list[dict[str, Any]],
    loss_of: Callable[[list[int]], torch.Tensor],
    n: int,
    settings: ZImagePartSettings,
    checkpoint: Path,
    log_path: Path,
    fingerprint: dict[str, Any],
    name: str,
    stop_at: int | None = None,
) -> None:
    """Train the parameter `groups` of `module` (each `{"params", "lr"}`) on `loss_of(indices)` for
    `settings.steps` batches of the `n` samples (or the schedule's first `stop_at`); resume from
    `checkpoint` if it holds this run's state."""
    params = [p for group in groups for p in group["params"]]
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    warmup = max(1, settings.warmup_steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, step / settings.steps))),
    )
    fingerprint = {**fingerprint, "settings": asdict(settings)}
    torch.manual_seed(settings.seed)
    start = restore_latest(checkpoint_candidates(checkpoint), fingerprint, module, optimizer, schedule)
    truncate_log(log_path, start)
    if start:
        log.info("%s: resumed at step %d of %d", name, start, settings.steps)
    module.train()
    with open(log_path, "a", encoding="utf-8") as out:
        end = settings.steps if stop_at is None else min(stop_at, settings.steps)
        for step in tqdm(range(start, end), initial=start, total=settings.steps, desc=name):
            indices = sample_order(n, settings.seed, step * settings.batch_size, settings.batch_size)
            loss = loss_of(indices)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"{name}: loss is {loss.item()} at step {step + 1}; lower its lr ({settings.lr})"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            out.write(
                json.dumps({"step": step + 1, "loss": round(loss.item(), 6), "lr": schedule.get_last_lr()[0]}) + "\n"
            )
            out.flush()
            if (step + 1) % settings.checkpoint_every == 0 and step + 1 < settings.steps:
                save_state(checkpoint, module, optimizer, schedule, step + 1, fingerprint)
    module.eval()


@dataclass
class Parts:
    """The pipeline's and the VLM's parts, from the random build with the trained ones swapped in."""

    text_encoder: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    vae: AutoencoderKL
    transformer: ZImageTransformer2DModel
    scheduler: Any
    vlm: PreTrainedModel | None = None
    processor: ProcessorMixin | None = None


def load_parts(random_dir: str | Path, trained: dict[str, str | Path], with_vlm: bool = False) -> Parts:
    """The random build's parts (`random_dir/{pipeline,vlm}`), each replaced by its trained folder
    in `trained` (`text_encoder`, `vae`, `transformer`, `vlm`) where given, in fp32."""
    random_dir = Path(random_dir)
    pipeline = ZImagePipeline.from_pretrained(random_dir / "pipeline", dtype=torch.float32, local_files_only=True)
    parts = Parts(pipeline.text_encoder, pipeline.tokenizer, pipeline.vae, pipeline.transformer, pipeline.scheduler)
    if "text_encoder" in trained:
        parts.text_encoder = Qwen3ForCausalLM.from_pretrained(trained["text_encoder"], dtype=torch.float32)
    if "vae" in trained:
        parts.vae = AutoencoderKL.from_pretrained(trained["vae"], torch_dtype=torch.float32)
    if "transformer" in trained:
        parts.transformer = ZImageTransformer2DModel.from_pretrained(trained["transformer"], torch_dtype=torch.float32)
    if with_vlm:
        source = trained.get("vlm", random_dir / "vlm")
        parts.vlm = AutoModelForImageTextToText.from_pretrained(source, dtype=torch.float32, local_files_only=True)
        parts.processor = AutoProcessor.from_pretrained(source, local_files_only=True)
    for module in (parts.text_encoder, parts.vae, parts.transformer, parts.vlm):
        if module is not None:
            module.requires_grad_(False).eval()
    return parts


def vlm_on_encoder(vlm: PreTrainedModel, encoder: PreTrainedModel) -> None:
    """Put the trained text encoder in as the VLM's language model (as Qwen3-VL grew out of Qwen3)."""
    vlm.model.language_model.load_state_dict(encoder.model.state_dict())
    vlm.lm_head.load_state_dict(encoder.lm_head.state_dict())


def part_objective(
    part: str, parts: Parts, scenes: Scenes, settings: ZImagePartSettings
) -> tuple[torch.nn.Module, list[dict[str, Any]], Callable[[list[int]], torch.Tensor]]:
    """The module a part trains, its parameter groups (`{"params", "lr"}`, set to require grad)
    and its loss on a batch of scene indices."""
    captions = scenes.captions
    if part == "vlm":
        vlm = parts.vlm
        vlm_on_encoder(vlm, parts.text_encoder)
        groups = [{"params": list(vlm.model.visual.parameters()), "lr": settings.lr}]  # the tower and merger
        if settings.language_lr is not None:  # the language model goes on from the encoder, as Qwen3-VL's from Qwen3
            groups.append({"params": list(vlm.model.language_model.parameters()), "lr": settings.language_lr})
        for group in groups:
            for param in group["params"]:
                param.requires_grad_(True)
        images = [scenes.image(i) for i in range(len(scenes.rows))]

        def caption_of(idx: list[int]) -> torch.Tensor:
            return caption_loss(vlm, parts.processor, [images[i] for i in idx], [captions[i] for i in idx])

        return vlm, groups, caption_of
    if part == "text_encoder":
        module = parts.text_encoder

        def loss_of(idx: list[int]) -> torch.Tensor:
            return text_encoder_loss(module, parts.tokenizer, [captions[i] for i in idx])
    elif part == "vae":
        module = parts.vae

        def loss_of(idx: list[int]) -> torch.Tensor:
            return vae_loss(module, scenes.pixels[idx], settings.kl_weight)
    elif part == "transformer":
        latents = encode_latents(parts.vae, scenes.pixels)  # (N, C, h, w), the VAE frozen
        embeddings = caption_embeddings(parts.text_encoder, parts.tokenizer, captions)
        module = parts.transformer

        def loss_of(idx: list[int]) -> torch.Tensor:
            return flow_matching_loss(module, latents[idx], [embeddings[captions[i]] for i in idx])
    else:
        raise ValueError(f"unknown part {part!r}: the Z-Image pretraining trains {', '.join(ZIMAGE_PARTS)}")
    module.requires_grad_(True)
    return module, [{"params": list(module.parameters()), "lr": settings.lr}], loss_of


def save_part(part: str, parts: Parts, scenes: Scenes, out_dir: Path) -> None:
    """Write a trained part as its class writes itself (the VAE with its latent factors set)."""
    if part == "text_encoder":
        parts.text_encoder.save_pretrained(out_dir)
        parts.tokenizer.save_pretrained(out_dir)
    elif part == "vae":
        shift, scaling = latent_factors(parts.vae, scenes.pixels)
        parts.vae.register_to_config(shift_factor=shift, scaling_factor=scaling)
        parts.vae.save_pretrained(out_dir)
    elif part == "transformer":
        parts.transformer.save_pretrained(out_dir)
    else:
        parts.vlm.save_pretrained(out_dir)
        parts.processor.save_pretrained(out_dir)


def pipeline_of(parts: Parts) -> ZImagePipeline:
    return ZImagePipeline(
        scheduler=parts.scheduler,
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        tokenizer=parts.tokenizer,
        transformer=parts.transformer,
    )


def part_fingerprint(
    part: str, random_dir: str | Path, trained: dict[str, str | Path], scenes: Scenes
) -> dict[str, Any]:
    """What a part's training starts from, for its resume state."""
    return {"part": part, "random": str(random_dir), "trained": sorted(trained), "scenes": len(scenes.rows)}


def train_loaded_part(
    part: str,
    parts: Parts,
    scenes: Scenes,
    settings: ZImagePartSettings,
    checkpoint: Path,
    log_path: Path,
    fingerprint: dict[str, Any],
    stop_at: int | None = None,
) -> None:
    """Train one part of loaded `parts` on the scenes, in place."""
    module, groups, loss_of = part_objective(part, parts, scenes, settings)
    train_part(module, groups, loss_of, len(scenes.rows), settings, checkpoint, log_path, fingerprint, part, stop_at)


def pretrain_part(
    part: str,
    random_dir: str | Path,
    trained: dict[str, str | Path],
    scenes: Scenes,
    settings: ZImagePartSettings,
    checkpoint: Path,
    log_path: Path,
    stop_at: int | None = None,
) -> Parts:
    """Train one part from the random build on the scenes (the parts it needs already trained)."""
    parts = load_parts(random_dir, trained, with_vlm=part == "vlm")
    fingerprint = part_fingerprint(part, random_dir, trained, scenes)
    train_loaded_part(part, parts, scenes, settings, checkpoint, log_path, fingerprint, stop_at)
    return parts


def first_steps(
    random_dir: str | Path,
    scenes: Scenes,
    settings: dict[str, ZImagePartSettings],
    steps: int,
    work_dir: Path,
) -> dict[str, list[dict[str, Any]]]:
    """Each part's weights digest at step 0 and after its first `steps` steps, every part from the
    random build alone (the transformer on the random encoder's embeddings and the random VAE's
    latents, the VLM under the random encoder), on one CPU thread: what rebuilding the pipeline
    with the same config must reproduce, without training the parts each one needs first."""
    record = {}
    for part in ZIMAGE_PARTS:
        parts = load_parts(random_dir, {}, with_vlm=part == "vlm")
        rows = [{"step": 0, "weights_sha256": state_digest(getattr(parts, part))}]
        state, log_path = work_dir / f"{part}.state", work_dir / f"{part}.jsonl"
        fingerprint = part_fingerprint(part, random_dir, {}, scenes)
        train_loaded_part(part, parts, scenes, settings[part], state, log_path, fingerprint, stop_at=steps)
        last = read_jsonl(log_path)[-1]
        rows.append({"step": steps, "loss": last["loss"], "weights_sha256": state_digest(getattr(parts, part))})
        record[part] = rows
    return record
