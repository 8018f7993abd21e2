"""Where a job's time goes: wall seconds inside the model's forward passes.

Snakemake's `benchmark:` files and its log give each job's wall time; this clock gives the part
spent in the model, so the rest (interpreter and library imports, loading, data, writing) is the
pipeline's own overhead (benchmarks/pipeline_overhead.py). Hooks sit on the model, its decoder
layers, its vision tower and its output head, because the pruning engine drives layers one by one
instead of calling the model; nested calls count once.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType

import torch

from vlmflow.architectures.registry import architecture
from vlmflow.core.io import write_json
from vlmflow.core.placement import execution_device

VISION_TOWERS = ("visual", "vision_tower", "vision_model")


def timed_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model and the submodules that do its heavy work when called on their own."""
    inner = getattr(model, "model", None)
    arch = architecture(model)
    layers = arch.decoder_layers(model)[1] if arch.supports("hooks") else []  # unknown family: the whole model
    modules = [model, *([inner] if isinstance(inner, torch.nn.Module) else []), *layers]
    inner = inner if isinstance(inner, torch.nn.Module) else model
    modules += [
        getattr(inner, name) for name in VISION_TOWERS if isinstance(getattr(inner, name, None), torch.nn.Module)
    ]
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return modules + ([head] if head is not None else [])


class ForwardClock:
    """Counts wall seconds during which any of the models' timed modules is running (CUDA work is
    waited for on every GPU at the end of each outermost call, so the seconds are the devices' too)."""

    def __init__(self, *models: torch.nn.Module | None) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._depth = 0
        self._start = 0.0
        self._handles = []
        for model in filter(None, models):
            for module in timed_modules(model):
                self._handles.append(module.register_forward_pre_hook(self._enter))
                self._handles.append(module.register_forward_hook(self._exit, always_call=True))
        # every GPU a model computes on (several when a device map spreads it)
        devices = {execution_device(module) for model in filter(None, models) for module in timed_modules(model)}
        self._gpus = {device for device in devices if device.type == "cuda"}

    def _enter(self, _module, _args) -> None:
        if self._depth == 0:
            self._start = time.perf_counter()
        self._depth += 1

    def _exit(self, _module, _args, _output) -> None:
        self._depth -= 1
        if self._depth == 0:
            for gpu in self._gpus:
                torch.cuda.synchronize(gpu)
            self.seconds += time.perf_counter() - self._start
            self.calls += 1

    def __enter__(self) -> ForwardClock:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for handle in self._handles:
            handle.remove()

    def write(self, log_path: str | Path) -> None:
        """`<log stem>.timing.json` beside the job's log: forward seconds and outermost calls."""
        write_json(Path(log_path).with_suffix(".timing.json"), {"forward_s": self.seconds, "forward_calls": self.calls})
