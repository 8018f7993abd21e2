"""Models larger than one GPU: plan accelerate's device map, check it, and follow it at run time.

With `device_map` (auto | balanced | sequential) a checkpoint is spread over the job's GPUs within
`max_memory` per device ({"0": "20GiB", "1": "20GiB", "cpu": "64GiB"}), what does not fit going
to the CPU and then to disk. The map is computed here first, on an empty-weights model (nothing is
loaded), exactly as transformers' `from_pretrained` would, and checked against the devices the job
sees; the checked map is then what `from_pretrained` follows. At run time, inputs go where the
input embeddings compute (`input_device`), and accelerate's hooks move each part's inputs to its
device; weights offloaded to the CPU or to disk are read with `named_weights`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from accelerate.utils import align_module_device, convert_file_size_to_int
from transformers import AutoConfig, AutoModelForImageTextToText, PreTrainedModel
from transformers.integrations.accelerate import get_balanced_memory, get_max_memory, infer_auto_device_map

from vlmflow.architectures.base import UnsupportedStage
from vlmflow.architectures.registry import architecture_of
from vlmflow.core.gpu_memory import check_free_memory_across, weights_mib

DEVICE_MAPS = ("auto", "balanced", "sequential")

Device = int | str  # a GPU id, "cpu" or "disk", as accelerate's device maps name them


def parse_max_memory(max_memory: Mapping[str | int, str | int] | None) -> dict[Device, int] | None:
    """{"0": "20GiB", "cpu": "64GiB"} as accelerate takes it: GPU ids as ints, sizes in bytes."""
    if max_memory is None:
        return None
    parsed: dict[Device, int] = {}
    for key, size in max_memory.items():
        name = str(key)
        if not (name.isdigit() or name == "cpu"):
            raise ValueError(f"max_memory: unknown device {key!r}; use GPU ids (0, 1, ...) and cpu")
        try:
            parsed[int(name) if name.isdigit() else name] = (
                size if isinstance(size, int) else convert_file_size_to_int(size)
            )
        except ValueError as err:
            raise ValueError(f"max_memory: {key}: {size!r} is not a size such as '20GiB' ({err})") from err
    return parsed


def empty_model(path: str | Path, dtype: torch.dtype, trust_remote_code: bool = False) -> PreTrainedModel:
    """The checkpoint's model with its weights on the meta device: sizes and structure, no memory."""
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, local_files_only=True)
    with init_empty_weights():
        return AutoModelForImageTextToText.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code)


def placed_on(plan: Mapping[str, Device], name: str) -> Device | None:
    """The device of parameter or module `name` under `plan` (its most specific entry), or None."""
    parts = name.split(".")
    for end in range(len(parts), -1, -1):
        prefix = ".".join(parts[:end])
        if prefix in plan:
            return plan[prefix]
    return None


def bytes_per_device(model: torch.nn.Module, plan: Mapping[str, Device]) -> dict[Device, int]:
    """How many bytes of parameters and buffers `plan` puts on each device."""
    totals: dict[Device, int] = {}
    for name, tensor in chain(model.named_parameters(), model.named_buffers()):
        device = placed_on(plan, name)
        totals[device] = totals.get(device, 0) + tensor.numel() * tensor.element_size()
    return totals


def plan_device_map(
    path: str | Path,
    max_memory: Mapping[str | int, str | int] | None,
    dtype: torch.dtype = torch.bfloat16,
    strategy: str = "auto",
    trust_remote_code: bool = False,
) -> dict[str, Device]:
    """{module: device} as `from_pretrained(path, device_map=strategy, max_memory=...)` computes it
    (`infer_auto_device_map`, transformers' take on accelerate's, over the model's no-split modules,
    on balanced budgets unless `sequential`), for GPU ids that need not exist here. Every parameter
    is placed."""
    if strategy not in DEVICE_MAPS:
        raise ValueError(f"device_map {strategy!r}: choose one of {', '.join(DEVICE_MAPS)}")
    model = empty_model(path, dtype, trust_remote_code)
    memory = parse_max_memory(max_memory)
    no_split = model._no_split_modules
    if not no_split:  # a map could cut a decoder layer (and its residual sum) across devices
        raise UnsupportedStage(
            architecture_of(model.config).family,
            "device_map",
            f"{type(model).__name__} names no modules a device map must keep whole (_no_split_modules)",
        )
    if strategy == "sequential":
        budget = get_max_memory(memory)
    else:
        budget = get_balanced_memory(model, max_memory=memory, no_split_module_classes=no_split)
    plan = dict(infer_auto_device_map(model, max_memory=budget, no_split_module_classes=no_split))
    unplaced = [
        name for name, _ in chain(model.named_parameters(), model.named_buffers()) if placed_on(plan, name) is None
    ]
    if not plan or unplaced:
        raise ValueError(
            f"{path}: the device map for max_memory {max_memory} leaves {len(unplaced)} parameters unplaced "
            f"(e.g. {', '.join(unplaced[:3]) or 'all'})"
        )
    return plan


def check_plan(
    path: str | Path,
    plan: Mapping[str, Device],
    max_memory: Mapping[str | int, str | int] | None,
    gpus: int,
    offload_folder: str | Path | None,
) -> None:
    """Fail, naming the checkpoint and max_memory, on a plan this job cannot follow: parts on GPUs
    it does not see, nothing on the GPUs it has, or parts on disk without an offload folder."""
    devices = set(plan.values())
    absent = sorted(d for d in devices if isinstance(d, int) and d >= gpus)
    if absent:
        raise ValueError(
            f"{path}: the device map puts layers on GPU {', '.join(map(str, absent))} (max_memory {max_memory}), but "
            f"this job sees {gpus} GPU(s); ask for more (resources gpu) or name only GPUs 0..{gpus - 1}"
        )
    if gpus and not any(isinstance(d, int) for d in devices):
        raise ValueError(
            f"{path}: the device map places nothing on the job's {gpus} GPU(s) (max_memory {max_memory}): "
            "give the GPUs room in max_memory"
        )
    on_disk = [name for name, device in plan.items() if device == "disk"]
    if on_disk and offload_folder is None:
        raise ValueError(
            f"{path} does not fit max_memory {max_memory}: {len(on_disk)} parts (e.g. {', '.join(on_disk[:3])}) "
            "would go to disk; raise max_memory, ask for more GPUs, or set disk_offload: true"
        )


def device_map_for(
    path: str | Path,
    strategy: str,
    max_memory: Mapping[str | int, str | int] | None,
    offload_folder: str | Path | None,
    device: torch.device,
    dtype: torch.dtype,
    trust_remote_code: bool = False,
) -> dict[str, Device]:
    """The checked device map a job loads `path` with, after the free-memory check on its GPUs."""
    memory = parse_max_memory(max_memory)
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    named = sorted(d for d in memory or {} if isinstance(d, int))
    if named and named[-1] >= gpus:
        raise ValueError(
            f"{path}: max_memory {max_memory} names GPU {', '.join(map(str, named))}, but this job sees {gpus} "
            f"GPU(s) on device {device.type}; ask for more GPUs (resources gpu) or drop them from max_memory"
        )
    if gpus:
        caps = {d: size / 2**20 for d, size in memory.items() if isinstance(d, int)} if memory else None
        check_free_memory_across(weights_mib(path, dtype), caps)
    elif memory is None:
        return {"": "cpu"}  # no GPU and no budget: the whole model on the CPU
    plan = plan_device_map(path, max_memory, dtype, strategy, trust_remote_code)
    check_plan(path, plan, max_memory, gpus, offload_folder)
    return plan


def execution_device(module: torch.nn.Module) -> torch.device:
    """Where `module` computes: accelerate's execution device when a device map placed it (its
    weights may meanwhile sit on the CPU, on disk or on the meta device), else where its first
    parameter or buffer is (the CPU when it has none)."""
    hook = getattr(module, "_hf_hook", None)
    for part in getattr(hook, "hooks", (hook,)):
        device = getattr(part, "execution_device", None)
        if device is not None:
            return torch.device(device)
    tensor = next(chain(module.parameters(), module.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def input_device(model: PreTrainedModel) -> torch.device:
    """Where a model's inputs go: where its input embeddings (the first decoder layer's input) compute."""
    return execution_device(model.get_input_embeddings())


def named_weights(module: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Every parameter and buffer of `module`, by name, with its values even where a device map
    offloaded it (loaded only while the caller holds it: compare, do not keep)."""
    for prefix, part in module.named_modules():
        with align_module_device(part):
            for name, tensor in chain(part.named_parameters(recurse=False), part.named_buffers(recurse=False)):
                yield f"{prefix}.{name}" if prefix else name, tensor


def describe_placement(model: PreTrainedModel) -> str:
    """For the log: the model's device, or the bytes its device map puts on each device."""
    plan = getattr(model, "hf_device_map", None)
    if not plan or len(set(plan.values())) == 1:
        return str(input_device(model))
    sizes = bytes_per_device(model, plan)
    return "device map: " + ", ".join(f"{device} {size / 2**30:.2f} GiB" for device, size in sizes.items())


@contextmanager
def offload_folder(enabled: bool, output: str | Path) -> Iterator[Path | None]:
    """With disk offload, a fresh folder for the offloaded weights beside the job's `output` (so
    inside results/), removed when the job ends (and when the next run of a killed one starts)."""
    if not enabled:
        yield None
        return
    folder = Path(output).with_name(f".{Path(output).name}.offload")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def placement_arguments(placement: Mapping[str, Any], output: str | Path) -> Iterator[dict[str, Any]]:
    """`load_vlm`'s device-map arguments from an experiment's placement settings (device_map,
    max_memory, disk_offload), with the offload folder beside the job's `output` while the job runs."""
    with offload_folder(placement["disk_offload"], output) as folder:
        yield {"device_map": placement["device_map"], "max_memory": placement["max_memory"], "offload_folder": folder}
