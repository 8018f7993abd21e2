"""Load a VLM checkpoint from a local path, the way every stage does.

One place decides the device and dtype (CUDA with bf16 when present, else CPU fp32) and how
checkpoints are opened: Auto classes, safetensors only, no network, remote code only on opt-in;
on a GPU, free memory is checked first (`vlmflow.core.gpu_memory`). A model larger than one GPU
is spread over the job's GPUs by a device map (`vlmflow.core.placement`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    PreTrainedModel,
    ProcessorMixin,
)

from vlmflow.core.gpu_memory import check_free_memory, weights_mib
from vlmflow.core.placement import device_map_for


def pick_device(prefer: str = "auto") -> tuple[torch.device, torch.dtype]:
    """CUDA with bf16 when a GPU is visible (or asked for), else CPU with fp32."""
    if prefer == "cpu" or (prefer == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu"), torch.float32
    return torch.device("cuda"), torch.bfloat16


def load_vlm(
    path: str | Path,
    *,
    device: str = "auto",
    device_map: str | None = None,
    max_memory: Mapping[str | int, str | int] | None = None,
    offload_folder: str | Path | None = None,
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Open model and processor from a checkpoint folder, ready for batched left-padded generation.

    With `device_map` (auto | balanced | sequential) the model is spread over the job's GPUs within
    `max_memory` per device ({"0": "20GiB", "cpu": "64GiB"}), what does not fit going to
    `offload_folder` on disk; without it, the whole model goes to one device."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path}: not a model checkpoint (no config.json); set models.<name>.path in config.yaml "
            "to a local folder written by save_pretrained (e.g. a downloaded Qwen/Qwen2-VL-2B-Instruct)"
        )
    torch_device, dtype = pick_device(device)
    if device_map is None and (max_memory is not None or offload_folder is not None):
        raise ValueError(f"{path}: max_memory and disk offload spread a model by a device_map; set device_map: auto")
    plan = None
    if device_map is not None:
        plan = device_map_for(path, device_map, max_memory, offload_folder, torch_device, dtype, trust_remote_code)
    elif torch_device.type == "cuda":
        # the current device: a data-parallel rank's own (torch.cuda.set_device), else GPU 0
        check_free_memory(weights_mib(path, dtype), torch.cuda.current_device())
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(
        path,
        dtype=dtype,
        device_map=plan,
        offload_folder=offload_folder,
        attn_implementation=attn_implementation,
        trust_remote_code=trust_remote_code,
        use_safetensors=True,
        local_files_only=True,
    )
    if plan is None:
        model.to(torch_device)
    model.eval()
    # Decoder-only generation needs the prompts flush right, so new tokens line up across a batch.
    processor.tokenizer.padding_side = "left"
    return model, processor
