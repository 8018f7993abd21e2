"""The guide's view of an image: how much attention each visual token gets (SGL's importance).

While the guide generates greedily (eager attention), a forward hook on each counted layer's
attention reduces that layer's weights at once to a per-key sum over heads and over the counted
query rows: the prompt tokens after the image at the prefill and each generated token afterwards.
No layer's attention map outlives its hook, so memory stays one layer's worth. The visual columns of
the sum are the importance. Also here: the scores of the baselines (random) and of early exit
(confidence and consistency).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from vlmflow.guided.pruning import LanguageInputs

ROWS = ("prompt_and_generated", "prompt", "generated", "last_prompt")


class ImportanceAccumulator:
    """An `observe` callback for `pruning.generate` that sums attention onto the prompt's tokens."""

    def __init__(
        self,
        inputs: LanguageInputs,
        num_layers: int,
        layers: Sequence[int] | None = None,
        rows: str = "prompt_and_generated",
    ) -> None:
        if rows not in ROWS:
            raise ValueError(f"unknown guide_rows {rows!r}; choose one of {', '.join(ROWS)}")
        chosen = range(num_layers) if layers is None else layers
        bad = [layer for layer in chosen if not -num_layers <= layer < num_layers]
        if bad:
            raise ValueError(f"guide_layers {bad} out of range for a {num_layers}-layer guide")
        self.layers = {layer % num_layers for layer in chosen}
        self.rows = rows
        self.visual = inputs.visual
        length = inputs.mask.shape[1]
        position = torch.arange(length, device=inputs.mask.device)
        last_visual = torch.where(inputs.visual, position, -1).amax(1, keepdim=True)
        if rows == "last_prompt":
            self.prompt_rows = (position == length - 1).expand_as(inputs.mask).float()
        else:  # the prompt tokens after the image (left padding: all real)
            self.prompt_rows = ((position > last_visual) & inputs.mask).float()
        self.total = torch.zeros(inputs.mask.shape, dtype=torch.float32, device=inputs.mask.device)

    def __call__(self, layer: int, weights: torch.Tensor, active: torch.Tensor | None) -> None:
        if layer not in self.layers:
            return
        length = self.total.shape[1]
        home = self.total.device  # the layer may compute on another device (a device map)
        if active is None:
            if self.rows != "generated":
                summed = weights.float().sum(1)[:, :, :length].to(home)  # (B, queries, keys)
                self.total += torch.einsum("bq,bqk->bk", self.prompt_rows, summed)
        elif self.rows in ("prompt_and_generated", "generated"):
            self.total += weights.float().sum(1)[:, -1, :length].to(home) * active[:, None].float()

    def scores(self) -> list[torch.Tensor]:
        """Per sample, the accumulated attention on each of its visual tokens, in sequence order."""
        return [self.total[b][self.visual[b]].cpu() for b in range(self.total.shape[0])]


def random_scores(question_ids: Sequence[str], counts: Sequence[int], seed: int) -> list[torch.Tensor]:
    """A seeded random ranking per question: the same for a question in any batch or run."""
    out = []
    for qid, n in zip(question_ids, counts):
        digest = int.from_bytes(hashlib.sha256(f"{seed}:{qid}".encode()).digest()[:8], "little")
        out.append(torch.rand(n, generator=torch.Generator().manual_seed(digest)))
    return out


def confidence(logprobs: torch.Tensor, lengths: torch.Tensor) -> list[float]:
    """Geometric mean of each answer's token probabilities (EOS included)."""
    totals = logprobs.sum(1)
    return [float(torch.exp(t / max(int(n), 1))) for t, n in zip(totals, lengths)]


def sequence_probability(logprobs: torch.Tensor) -> list[float]:
    """Product of each sequence's token probabilities (SEE's consistency)."""
    return [float(torch.exp(t)) for t in logprobs.sum(1)]
