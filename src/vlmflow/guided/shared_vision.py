"""One vision-tower pass for a guide and a decode model with the same tower: the second replays it.

The first model to encode a batch runs its tower and the output of every transformer block is
recorded; the next ones replace their blocks' forward by the recording, so their own patch
embedding, feature selection, projector (Qwen's merger, deepstack mergers, LLaVA's MLP) and
reordering (Qwen2.5-VL's windows) run on exactly the states their own blocks would compute. The
towers' block weights must be equal (checked at load) and block 0 must receive the same input
(checked at every replay), so the shared features equal each model's own. The models may sit on
different devices (or be spread by device maps): a replayed output goes where its block's input is,
and a block's own forward (accelerate's device hook, when it has one) is put back afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import zip_longest
from typing import Any

import torch
from accelerate.utils import send_to_device
from transformers import PreTrainedModel, ProcessorMixin

from vlmflow.architectures.base import UnsupportedStage
from vlmflow.architectures.registry import architecture
from vlmflow.core.placement import named_weights


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
                given = _first_tensor(args, kwargs)
                if index == 0 and not torch.equal(given, self.first_input.to(given.device)):
                    raise RuntimeError("shared vision: the second model's tower input differs from the first's")
                return send_to_device(self.outputs[index], given.device)

            return forward

        own = [block.__dict__.get("forward") for block in blocks]  # accelerate's hooked forward, if any
        for i, block in enumerate(blocks):
            block.forward = replay(i)
        try:
            yield
        finally:
            for block, forward in zip(blocks, own):
                if forward is None:
                    del block.forward
                else:
                    block.forward = forward


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
    ours = named_weights(architecture(guide).vision_blocks(guide))
    theirs = named_weights(architecture(decode).vision_blocks(decode))
    missing = (None, None)
    for (name, mine), (other, their) in zip_longest(ours, theirs, fillvalue=missing):
        if name != other or mine.shape != their.shape or not torch.equal(mine, their.to(mine.device)):
            return "their vision towers' weights differ"
    return None
