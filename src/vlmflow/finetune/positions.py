"""M-RoPE position ids computed with a training batch on the CPU, not inside the model's forward.

Qwen2/2.5/3-VL build their multimodal rotary positions in the forward, one sample at a time in
Python, with a device sync per sample: on a GPU that loop, not the arithmetic, bounds a small
model's step. The same method of the same class, on a config-only copy of the model's inner VLM
(meta device: no weights), gives the same ids from the CPU batch, so a loader worker computes them
ahead of the step and the forward takes them as `position_ids`.
"""

from __future__ import annotations

import inspect

import torch
from transformers import PreTrainedModel

from vlmflow.architectures.registry import architecture


class BatchPositions:
    """`positions(batch)`: the (3, B, L) position ids the VLM's forward would compute for `batch`."""

    def __init__(self, model: PreTrainedModel) -> None:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        inner = base.model  # the VLM without its LM head: owns compute_3d_position_ids
        with torch.device("meta"):
            self.index = type(inner)(inner.config)
        self.arguments = list(inspect.signature(self.index.compute_3d_position_ids).parameters)

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """None where the forward would build none either (no images): it then counts 0, 1, ..."""
        # The batch's own tensors; None for the rest, as at a training forward: no embeddings yet, no cache.
        return self.index.compute_3d_position_ids(**{name: batch.get(name) for name in self.arguments})


def batch_positions(model: PreTrainedModel) -> BatchPositions | None:
    """The CPU position index for families whose forward builds positions per sample, else None."""
    return BatchPositions(model) if architecture(model).batch_positions else None
