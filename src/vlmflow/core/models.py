"""Load a VLM checkpoint from a local path, the way every stage does.

One place decides the device and dtype (CUDA with bf16 when present, else CPU fp32) and how
checkpoints are opened: Auto classes, safetensors only, no network, remote code only on opt-in;
on a GPU, free memory is checked first (`vlmflow.core.gpu_memory`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    ProcessorMixin,
)

from vlmflow.core.gpu_memory import check_free_memory, weights_mib


def pick_device(prefer: str = "auto") -> tuple[torch.device, torch.dtype]:
    """CUDA with bf16 when a GPU is visible (or asked for), else CPU with fp32."""
    if prefer == "cpu" or (prefer == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu"), torch.float32
    return torch.device("cuda"), torch.bfloat16


def load_vlm(
    path: str | Path,
    *,
    device: str = "auto",
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Open model and processor from a checkpoint folder, ready for batched left-padded generation."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path}: not a model checkpoint (no config.json); set models.<name>.path in config.yaml "
            "to a local folder written by save_pretrained (e.g. a downloaded Qwen/Qwen2-VL-2B-Instruct)"
        )
    torch_device, dtype = pick_device(device)
    if torch_device.type == "cuda":
        check_free_memory(weights_mib(path, dtype), torch_device.index or 0)
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(
        path,
        dtype=dtype,
        attn_implementation=attn_implementation,
        trust_remote_code=trust_remote_code,
        use_safetensors=True,
        local_files_only=True,
    )
    model.to(torch_device).eval()
    # Decoder-only generation needs the prompts flush right, so new tokens line up across a batch.
    processor.tokenizer.padding_side = "left"
    return model, processor


@contextmanager
def padding_side(tokenizer: PreTrainedTokenizerBase, side: str) -> Iterator[None]:
    """Pad on `side` inside the block (training and likelihood scoring pad right; generation,
    the loaded default, pads left) and restore the previous side even on error."""
    previous, tokenizer.padding_side = tokenizer.padding_side, side
    try:
        yield
    finally:
        tokenizer.padding_side = previous


# Where the zoo's families (and their relatives) keep the language model's decoder layers.
LAYER_PATHS = (
    "model.language_model.layers",  # Qwen2-VL, Qwen2.5-VL, LLaVA, Idefics3, InternVL (transformers 5)
    "model.language_model.model.layers",
    "language_model.model.layers",
    "model.text_model.layers",
    "model.llm.model.layers",  # NVILA-style
    "model.layers",
)


def _get(module: torch.nn.Module, path: str) -> torch.nn.Module | None:
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def decoder_layers(model: PreTrainedModel) -> tuple[str, torch.nn.ModuleList]:
    """The language model's decoder layers and their module path; an error lists the candidates."""
    for path in LAYER_PATHS:
        layers = _get(model, path)
        if isinstance(layers, torch.nn.ModuleList) and len(layers):
            return path, layers
    candidates = [name for name, module in model.named_modules() if isinstance(module, torch.nn.ModuleList)]
    raise ValueError(
        f"{type(model).__name__}: no decoder layer list at {', '.join(LAYER_PATHS)}; "
        f"module lists in this model: {', '.join(candidates) or 'none'}"
    )
