"""Evaluating a foveated VLM on the fixed val set, and keeping its attention maps.

Every run is scored the same way whatever its training loss: answer-only cross-entropy (mean over
answer tokens) and exact-match accuracy (every answer token, eos included, is the argmax given the
right prefix, which is what greedy decoding would produce), overall and per kind of sample.
Where the query attends to patches, how much of that attention lands on each video's moving
object (`vlmflow.foveated.motion`) says whether the heatmaps follow it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from vlmflow.core.io import atomic_write
from vlmflow.foveated.data import FrameSample, FrameStore, collate, tokenize
from vlmflow.foveated.model import MODES, FrameLM, training_mode, visual_tokens_per_frame
from vlmflow.foveated.motion import MIN_FRAMES, mover_attention, moving_patches
from vlmflow.foveated.query import attention_entropy


class FrameBatches:
    """Samples -> model-ready batches (frames from the store, tokens with the chosen loss routing).
    Each sample is tokenized once per loss routing: a run revisits the same samples every epoch."""

    def __init__(
        self,
        samples: Sequence[FrameSample],
        tokenizer: Any,
        store: FrameStore,
        max_length: int,
        device: torch.device,
    ) -> None:
        self.samples, self.tokenizer, self.store = samples, tokenizer, store
        self.max_length, self.device = max_length, device
        self._tokens: dict[tuple[int, str], tuple[list[int], list[int]]] = {}

    def tokens(self, index: int, loss: str) -> tuple[list[int], list[int]]:
        key = (index, loss)
        if key not in self._tokens:
            self._tokens[key] = tokenize(self.tokenizer, self.samples[index], loss, self.max_length)
        return self._tokens[key]

    def __call__(self, indices: Sequence[int], loss: str) -> dict[str, torch.Tensor]:
        items = [(self.store(self.samples[i]), *self.tokens(i, loss)) for i in indices]
        batch = collate(items, self.tokenizer.pad_token_id)
        return {k: v.to(self.device) for k, v in batch.items()}


@torch.no_grad()
def evaluate(
    model: FrameLM,
    batches: FrameBatches,
    indices: Sequence[int],
    mode: str,
    batch_size: int,
    blank: bool = False,
) -> dict[str, float]:
    """val_loss, accuracy (and per kind), val_loss_coarse / val_loss_fine where the mode has them,
    the mean entropy of the query attention (the fine pass's where there is one), and on videos of
    three or more frames that attention's share on the moving object's patches
    (`mover_attention`), the share of patches it covers (`mover_share`, what uniform attention
    would give) and their ratio (`mover_lift`). `blank` replaces every frame by a uniform one (the processor's mean colour):
    the control that says how much of the score comes from the pixels."""
    was_training = model.training
    model.eval()
    kinds = [batches.samples[i].kind for i in indices]
    sample_loss, sample_tokens, sample_correct = [], [], []
    totals = {"coarse": [0.0, 0.0], "fine": [0.0, 0.0], "entropy": [0.0, 0.0]}
    mover_mass, mover_share, mover_frames = 0.0, 0.0, 0
    for start in tqdm(range(0, len(indices), batch_size), desc=f"eval {mode}", unit="batch", leave=False):
        chunk = indices[start : start + batch_size]
        batch = batches(chunk, loss="answer_only")
        if blank:
            batch["pixel_values"] = torch.zeros_like(batch["pixel_values"])
        out = model(**batch, mode=mode)
        mask = batch["loss_mask"][:, 1:]
        tokens = mask.sum(1)
        sample_loss += out.token_losses.sum(1).tolist()
        sample_tokens += tokens.tolist()
        sample_correct += ((out.correct.sum(1) == tokens) & (tokens > 0)).tolist()
        for name, value in (("coarse", out.loss_coarse), ("fine", out.loss_fine)):
            if value is not None:
                totals[name][0] += float(value) * float(tokens.sum())
                totals[name][1] += float(tokens.sum())
        weights = out.attention.get("fine", out.attention.get("coarse"))
        real = batch["frame_mask"]
        if weights is not None and real.any():
            totals["entropy"][0] += float(attention_entropy(weights[real].float())) * int(real.sum())
            totals["entropy"][1] += int(real.sum())
        if weights is not None and not blank:
            grid = math.isqrt(weights.shape[-1] - 1)
            for row, index in enumerate(chunk):
                frames = int(real[row].sum())
                if batches.samples[index].kind == "video" and frames >= MIN_FRAMES:
                    moving = moving_patches(batch["pixel_values"][row, :frames], grid)
                    mass, share = mover_attention(weights[row, :frames], moving)
                    mover_mass += float(mass.sum())
                    mover_share += float(share.sum())
                    mover_frames += len(mass)
    model.train(was_training)
    losses, counts, hits = (
        np.array(sample_loss),
        np.array(sample_tokens),
        np.array(sample_correct, dtype=float),
    )
    result = {
        "val_loss": float(losses.sum() / max(counts.sum(), 1)),
        "accuracy": float(hits.mean()),
    }
    for kind in dict.fromkeys(kinds):
        chosen = np.array([k == kind for k in kinds])
        result[f"val_loss/{kind}"] = float(losses[chosen].sum() / max(counts[chosen].sum(), 1))
        result[f"accuracy/{kind}"] = float(hits[chosen].mean())
    for name, key in (
        ("coarse", "val_loss_coarse"),
        ("fine", "val_loss_fine"),
        ("entropy", "attention_entropy"),
    ):
        total, count = totals[name]
        result[key] = total / count if count else None
    result["mover_attention"] = mover_mass / mover_frames if mover_frames else None
    result["mover_share"] = mover_share / mover_frames if mover_frames else None
    result["mover_lift"] = mover_mass / mover_share if mover_frames else None
    return result


def attention_samples(samples: Sequence[FrameSample], indices: Sequence[int], count: int) -> list[int]:
    """The fixed samples whose attention maps are kept: videos first, then images (text has none)."""
    ranked = sorted(
        (i for i in indices if samples[i].kind != "text"),
        key=lambda i: (samples[i].kind != "video", i),
    )
    return ranked[:count]


@torch.no_grad()
def save_attention(model: FrameLM, batches: FrameBatches, indices: Sequence[int], mode: str, path: Path) -> None:
    """The last encoder layer's query attention of each fixed sample's frames, per pass, as npz."""
    was_training = model.training
    model.eval()
    batch = batches(indices, loss="answer_only")
    out = model(**batch, mode=mode)
    model.train(was_training)
    arrays = {name: w.float().cpu().numpy().astype(np.float16) for name, w in out.attention.items()}
    arrays["frame_mask"] = batch["frame_mask"].cpu().numpy()
    arrays["sample_ids"] = np.array([batches.samples[i].id for i in indices])
    with atomic_write(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def save_frames(batches: FrameBatches, indices: Sequence[int], image_processor: Any, path: Path) -> None:
    """The fixed samples' frames as uint8 pixels (the processor's normalisation undone), for the
    heatmaps drawn over them."""
    batch = batches(indices, loss="answer_only")
    mean = torch.tensor(image_processor.image_mean).view(1, 1, 3, 1, 1)
    std = torch.tensor(image_processor.image_std).view(1, 1, 3, 1, 1)
    pixels = (batch["pixel_values"].cpu() * std + mean).clamp(0, 1) * 255
    with atomic_write(path, "wb") as handle:
        np.savez_compressed(
            handle,
            pixels=pixels.round().to(torch.uint8).permute(0, 1, 3, 4, 2).numpy(),
            sample_ids=np.array([batches.samples[i].id for i in indices]),
        )


def evaluate_modes(
    model: FrameLM, batches: FrameBatches, indices: Sequence[int], mode: str, batch_size: int
) -> dict[str, Any]:
    """The final evaluation: every mode the architecture has (for the foveated model the seed's
    coarse_only / coarse_fine / autoregressive), on the same fixed val samples, and `blank_frames`:
    the trained mode with every frame blanked (what the model scores without looking)."""
    modes = {
        mode: {"n": len(indices), **evaluate(model, batches, indices, mode, batch_size)}
        for mode in MODES[model.architecture]
    }
    trained = training_mode(model, mode)
    modes["blank_frames"] = {"n": len(indices), **evaluate(model, batches, indices, trained, batch_size, blank=True)}
    return {
        "architecture": model.architecture,
        "visual_tokens_per_frame": visual_tokens_per_frame(model),
        "modes": modes,
    }
