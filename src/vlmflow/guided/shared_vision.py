"""One vision-tower pass for a guide and a decode model with the same tower: the second replays it.

The first model to encode a batch runs its tower and the output of every transformer block is
recorded; the next ones replace their blocks' forward by the recording, so their own patch
embedding, feature selection, projector (Qwen's merger, deepstack mergers, LLaVA's MLP) and
reordering (Qwen2.5-VL's windows) run on exactly the states their own blocks would compute. The
towers' block weights must be equal (checked at load) and block 0 must receive the same input
(checked at every replay), so the shared features equal each model's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers import PreTrainedModel, ProcessorMixin

from vlmflow.architectures.base import UnsupportedStage
from vlmflow.architectures.registry import architecture


def _first_tensor(args: tuple, kwargs: dict[str, Any]) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


class SharedVision:
    """Records one model's vision blocks per batch and replays them for the others."""

    def __init__(self) -> None:
        self.outputs: list[Any] | None = None  # one per block, as the block returned it
        self.first_input: torch.Tensor | None = None

    @contextmanager
    def run(self, model: PreTrainedModel) -> Iterator[None]:
        blocks = architecture(model).vision_blocks(model)
        if self.outputs is None:
            with self._record(blocks):
                yield
        else:
            with self._replay(blocks):
                yield

    @contextmanager
    def _record(self, blocks: torch.nn.ModuleList) -> Iterator[None]:
        outputs: list[Any] = []

        def keep_input(_module, args, kwargs):
            self.first_input = _first_tensor(args, kwargs).detach().clone()

        handles = [blocks[0].register_forward_pre_hook(keep_input, with_kwargs=True)]
        handles += [block.register_forward_hook(lambda _m, _a, out: outputs.append(out)) for block in blocks]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
        if len(outputs) != len(blocks):
            raise RuntimeError(f"shared vision: the tower ran {len(outputs)} block calls, expected {len(blocks)}")
        self.outputs = outputs

    @contextmanager
    def _replay(self, blocks: torch.nn.ModuleList) -> Iterator[None]:
        if len(blocks) != len(self.outputs):
            raise RuntimeError(f"shared vision: {len(blocks)} blocks cannot replay {len(self.outputs)}")

        def replay(index: int):
            def forward(*args, **kwargs):
                if index == 0 and not torch.equal(_first_tensor(args, kwargs), self.first_input):
                    raise RuntimeError("shared vision: the second model's tower input differs from the first's")
                return self.outputs[index]

            return forward

        for i, block in enumerate(blocks):
            block.forward = replay(i)
        try:
            yield
        finally:
            for block in blocks:
                del block.forward


def shared_vision_reason(
    guide: PreTrainedModel, guide_processor: ProcessorMixin, decode: PreTrainedModel, decode_processor: ProcessorMixin
) -> str | None:
    """Why the two models cannot share one vision pass, or None when they can."""
    for model in (guide, decode):
        try:
            architecture(model).require("shared_vision")
        except UnsupportedStage as err:
            return str(err)
    if guide.config.model_type != decode.config.model_type:
        return f"one is {guide.config.model_type}, the other {decode.config.model_type}"
    if guide_processor.image_processor.to_dict() != decode_processor.image_processor.to_dict():
        return "their image processors differ"
    ours = architecture(guide).vision_blocks(guide).state_dict()
    theirs = architecture(decode).vision_blocks(decode).state_dict()
    if ours.keys() != theirs.keys() or any(
        ours[k].shape != theirs[k].shape or not torch.equal(ours[k], theirs[k].to(ours[k].device)) for k in ours
    ):
        return "their vision towers' weights differ"
    return None
