"""Data for the foveated VLM: video, image and text samples, a seeded mix budget, frames, tokens.

Every sample is one user turn and one assistant answer with 0..T frames. Training draws a fixed
number of samples per kind (the mix) in an order that is a pure function of the seed, so two runs,
or a resumed one, see the same data. Frames are decoded and preprocessed once and cached: the same
small synthetic set is revisited for many epochs.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from vlmflow.core.checkpoint import sample_order
from vlmflow.core.errors import InputError
from vlmflow.core.io import read_jsonl

KINDS = ("video", "image", "text")
LOSSES = ("answer_only", "all_tokens")
TEXT_FIELDS = ("id", "kind", "source", "user", "assistant")


@dataclass(frozen=True)
class FrameSample:
    id: str
    kind: str
    source: str
    frames: tuple[Path, ...]  # resolved paths
    user: str
    assistant: str


def _frame_count_problem(kind: str, n: int) -> str | None:
    if kind == "video" and n < 2:
        return f"a video needs at least 2 frames, got {n}"
    if kind == "image" and n != 1:
        return f"an image needs exactly 1 frame, got {n}"
    if kind == "text" and n != 0:
        return f"a text sample has no frames, got {n}"
    return None


def _sample(path: Path, row: Any, record: str) -> FrameSample:
    """Validate one JSONL record; `record` names it in errors until its id is known."""
    if not isinstance(row, dict):
        raise InputError(path, "a record must be a JSON object", record=record)
    for field in TEXT_FIELDS:
        value = row.get(field)
        if not isinstance(value, str) or not value.strip():
            raise InputError(path, "missing or empty", record=record, field=field)
        if field == "id":
            record = value
    kind = row["kind"]
    if kind not in KINDS:
        raise InputError(path, f"unknown kind {kind!r}, expected one of {KINDS}", record, "kind")
    frames = row.get("frames")
    if not isinstance(frames, list) or not all(isinstance(f, str) and f for f in frames):
        raise InputError(path, "must be a list of frame paths", record=record, field="frames")
    problem = _frame_count_problem(kind, len(frames))
    if problem:
        raise InputError(path, problem, record=record, field="frames")
    resolved = []
    for frame in frames:
        file = (path.parent / frame).resolve()  # an absolute `frame` replaces the folder
        if not file.is_file():
            raise InputError(path, f"frame file {file} does not exist", record, "frames")
        resolved.append(file)
    return FrameSample(
        id=row["id"],
        kind=kind,
        source=row["source"],
        frames=tuple(resolved),
        user=row["user"],
        assistant=row["assistant"],
    )


def read_samples(path: str | Path) -> list[FrameSample]:
    """Read and validate a JSONL of samples; frame paths are relative to the JSONL's folder."""
    path = Path(path)
    samples: list[FrameSample] = []
    seen: dict[str, int] = {}
    for number, row in enumerate(read_jsonl(path), start=1):
        sample = _sample(path, row, f"line {number}")
        if sample.id in seen:
            raise InputError(path, f"duplicate id (first in record {seen[sample.id]})", sample.id, "id")
        seen[sample.id] = number
        samples.append(sample)
    return samples


def _kind_counts(mix: Mapping[str, float], budget: int) -> dict[str, int]:
    """Largest-remainder rounding of the normalised weights times `budget` (ties: KINDS order)."""
    unknown = sorted(set(mix) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown kinds {unknown} in the mix, expected some of {KINDS}")
    if any(not math.isfinite(w) or w < 0 for w in mix.values()):
        raise ValueError(f"mix weights must be finite and >= 0, got {dict(mix)}")
    total = sum(mix.values())
    if total <= 0:
        raise ValueError(f"mix weights must sum to more than 0, got {dict(mix)}")
    exact = {kind: mix.get(kind, 0.0) / total * budget for kind in KINDS}
    counts = {kind: math.floor(share) for kind, share in exact.items()}
    by_remainder = sorted(KINDS, key=lambda k: (-(exact[k] - counts[k]), KINDS.index(k)))
    for kind in by_remainder[: budget - sum(counts.values())]:
        counts[kind] += 1
    return counts


def _kind_seed(seed: int, kind: str) -> int:
    """A per-kind seed that is the same in every process (Python's hash() is salted)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{kind}".encode()).digest()[:4], "big")


def sample_budget(samples: Sequence[FrameSample], mix: Mapping[str, float], budget: int, seed: int) -> list[int]:
    """`budget` indices into `samples`, split between kinds by `mix`, identical in every run.

    Each kind cycles through seeded epoch permutations of its own pool, so a small pool (text)
    repeats evenly; the concatenation is then shuffled so kinds interleave.
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    counts = _kind_counts(mix, budget)
    pools: dict[str, list[int]] = {kind: [] for kind in KINDS}
    for index, sample in enumerate(samples):
        pools[sample.kind].append(index)
    present = [kind for kind in KINDS if pools[kind]]
    chosen: list[int] = []
    for kind in KINDS:
        if mix.get(kind, 0.0) > 0 and not pools[kind]:
            raise ValueError(f"the mix asks for kind {kind!r} but there are none; have {present}")
        if counts[kind]:
            order = sample_order(len(pools[kind]), _kind_seed(seed, kind), 0, counts[kind])
            chosen += [pools[kind][i] for i in order]
    perm = torch.randperm(len(chosen), generator=torch.Generator().manual_seed(seed))
    return [chosen[i] for i in perm.tolist()]


def fixed_subset(n_samples: int, size: int | None, seed: int) -> list[int]:
    """A fixed validation subset: sorted, and the same for the same (n_samples, size, seed)."""
    if size is not None and size < 0:
        raise ValueError(f"size must be >= 0 or None, got {size}")
    if size is None or size >= n_samples:
        return list(range(n_samples))
    perm = torch.randperm(n_samples, generator=torch.Generator().manual_seed(seed))
    return sorted(perm[:size].tolist())


def _processor_hw(image_processor: Any) -> tuple[int, int]:
    """Output height and width from the processor's config (crop_size, else size); both are
    dicts or transformers' SizeDict, which share `.get`."""
    size = getattr(image_processor, "crop_size", None) or getattr(image_processor, "size", None)
    if isinstance(size, int):
        return size, size
    if hasattr(size, "get") and size.get("height") and size.get("width"):
        return int(size.get("height")), int(size.get("width"))
    if hasattr(size, "get") and size.get("shortest_edge"):
        return int(size.get("shortest_edge")), int(size.get("shortest_edge"))
    raise ValueError(f"cannot tell the image processor's output size from {size!r}")


class FrameStore:
    """Sample -> (frames, 3, H, W) float32 pixels. Processed frames are kept up to `cache_bytes`
    (least recently used go first): a small set revisited for many epochs is decoded once, a large
    one streams through in bounded memory."""

    def __init__(self, image_processor: Any, replicate_image_frames: int = 1, cache_bytes: int = 2 << 30) -> None:
        if replicate_image_frames < 1:
            raise ValueError(f"replicate_image_frames must be >= 1, got {replicate_image_frames}")
        self.image_processor = image_processor
        self.replicate_image_frames = replicate_image_frames
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[Path, torch.Tensor] = OrderedDict()
        self._cached_bytes = 0

    def _frame_hw(self) -> tuple[int, int]:
        if self._cache:
            first = next(iter(self._cache.values()))
            return int(first.shape[-2]), int(first.shape[-1])
        return _processor_hw(self.image_processor)

    def _remember(self, path: Path, pixels: torch.Tensor) -> None:
        self._cache[path] = pixels
        self._cached_bytes += pixels.numel() * pixels.element_size()
        while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
            _, dropped = self._cache.popitem(last=False)
            self._cached_bytes -= dropped.numel() * dropped.element_size()

    @staticmethod
    def _open(path: Path, sample: FrameSample) -> Image.Image:
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except OSError as err:  # PIL's UnidentifiedImageError and truncated files are OSErrors
            raise InputError(path, f"cannot decode frame ({err})", record=sample.id) from err

    def __call__(self, sample: FrameSample) -> torch.Tensor:
        wanted = list(dict.fromkeys(sample.frames))
        found = {path: self._cache[path] for path in wanted if path in self._cache}
        new = [path for path in wanted if path not in found]
        if new:
            images = [self._open(path, sample) for path in new]
            pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
            for path, pixel in zip(new, pixels, strict=True):
                found[path] = torch.as_tensor(pixel, dtype=torch.float32)
                self._remember(path, found[path])
        for path in found:
            if path in self._cache:
                self._cache.move_to_end(path)
        if not sample.frames:
            return torch.zeros((0, 3, *self._frame_hw()), dtype=torch.float32)
        frames = torch.stack([found[path] for path in sample.frames])
        if sample.kind == "image":
            frames = frames.repeat(self.replicate_image_frames, 1, 1, 1)
        return frames


def tokenize(
    tokenizer: Any, sample: FrameSample, loss: str, max_length: int | None = None
) -> tuple[list[int], list[int]]:
    """(input_ids, loss_mask) for prompt + answer + eos; prompt and answer are tokenized apart so
    the mask boundary is exact. Truncation drops the prompt's start, never the answer."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if tokenizer.eos_token is None:
        raise ValueError("the tokenizer has no eos_token to end the answer with")
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": sample.user}]
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    else:
        prompt = f"User: {sample.user}\nAssistant: "
    prompt_ids = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    answer = sample.assistant + tokenizer.eos_token
    answer_ids = list(tokenizer(answer, add_special_tokens=False)["input_ids"])
    if max_length is not None:
        if len(answer_ids) > max_length:
            raise ValueError(
                f"sample {sample.id}: the answer alone is {len(answer_ids)} tokens, more than max_length {max_length}"
            )
        keep = max_length - len(answer_ids)
        prompt_ids = prompt_ids[max(0, len(prompt_ids) - keep) :]
    prompt_mask = 0 if loss == "answer_only" else 1
    return prompt_ids + answer_ids, [prompt_mask] * len(prompt_ids) + [1] * len(answer_ids)


def collate(items: Sequence[tuple[torch.Tensor, list[int], list[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad frames (zeros, frame_mask False) and tokens (right, pad_token_id, masks 0) to a batch."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    hw = {tuple(frames.shape[-2:]) for frames, _, _ in items}
    if len(hw) != 1:
        raise ValueError(f"frames in one batch must share one size, got {sorted(hw)}")
    (height, width), batch = hw.pop(), len(items)
    t_max = max(frames.shape[0] for frames, _, _ in items)
    s_max = max(len(ids) for _, ids, _ in items)
    pixel_values = torch.zeros((batch, t_max, 3, height, width), dtype=torch.float32)
    frame_mask = torch.zeros((batch, t_max), dtype=torch.bool)
    input_ids = torch.full((batch, s_max), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((batch, s_max), dtype=torch.long)
    loss_mask = torch.zeros((batch, s_max), dtype=torch.float32)
    for row, (frames, ids, mask) in enumerate(items):
        if len(ids) != len(mask):
            raise ValueError(f"item {row}: {len(ids)} input ids but {len(mask)} loss-mask entries")
        pixel_values[row, : frames.shape[0]] = frames
        frame_mask[row, : frames.shape[0]] = True
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
        loss_mask[row, : len(ids)] = torch.tensor(mask, dtype=torch.float32)
    return {
        "pixel_values": pixel_values,
        "frame_mask": frame_mask,
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "loss_mask": loss_mask,
    }
