"""Load a VLM checkpoint from a local path, the way every stage does.

One place decides the device and dtype (CUDA with bf16 when present, else CPU fp32) and how
checkpoints are opened: Auto classes, safetensors only, no network, remote code only on opt-in;
on a GPU, free memory is checked first (`vlmflow.core.gpu_memory`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    PreTrainedModel,
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
