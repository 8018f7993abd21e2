"""A training run's micro-batches by index, collated on the CPU, ahead of the step in worker
processes when asked (`loader_workers`), so that a GPU step need not wait on the processor.

Micro-batch `index` holds samples `index * batch_size ..` of the seeded order, whichever process
collates it, so a run with workers trains on the same batches, in the same order, as one without.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset
from transformers import ProcessorMixin

from vlmflow.architectures.base import Architecture
from vlmflow.core.checkpoint import sample_order
from vlmflow.core.records import Record
from vlmflow.core.settings import GenerationSettings
from vlmflow.finetune.examples import collate
from vlmflow.finetune.positions import BatchPositions

PREFETCH_PER_WORKER = 4  # micro-batches each worker collates ahead


class MicroBatches(Dataset):
    """Micro-batch `index` of a run: `batch_size` records in the seeded order, collated."""

    def __init__(
        self,
        arch: Architecture,
        processor: ProcessorMixin,
        records: Sequence[Record],
        generation: GenerationSettings,
        batch_size: int,
        seed: int,
        positions: BatchPositions | None = None,
    ) -> None:
        self.arch, self.processor, self.records, self.generation = arch, processor, records, generation
        self.batch_size, self.seed, self.positions = batch_size, seed, positions

    def __getitem__(self, index: int) -> tuple[int, dict[str, torch.Tensor]]:
        order = sample_order(len(self.records), self.seed, index * self.batch_size, self.batch_size)
        batch = collate(self.arch, self.processor, [self.records[i] for i in order], self.generation)
        if self.positions is not None and (ids := self.positions(batch)) is not None:
            batch["position_ids"] = ids  # (3, B, L), as the forward would build them
        return index, batch


class BatchSource:
    """Hands out micro-batches by index. `expect(indices)` starts `workers` processes collating
    those indices in order; a request for another index (or with no workers) collates in place."""

    def __init__(self, batches: MicroBatches, workers: int, pin_memory: bool = False) -> None:
        self.batches, self.workers, self.pin_memory = batches, workers, pin_memory
        self.ahead: Iterator[tuple[int, dict[str, torch.Tensor]]] | None = None
        self.pending: Iterator[int] = iter(())
        self.next_index: int | None = None

    def expect(self, indices: Sequence[int]) -> None:
        """The indices the run will ask for next, in order."""
        self.close()
        if not self.workers or not indices:
            return
        loader = DataLoader(
            self.batches,
            batch_size=None,
            sampler=list(indices),
            num_workers=self.workers,
            prefetch_factor=PREFETCH_PER_WORKER,
            pin_memory=self.pin_memory,  # for a GPU: the host-to-device copy runs asynchronously
            multiprocessing_context="fork",  # the workers share the records and processor, never CUDA
            generator=torch.Generator(),  # its worker seeds are drawn from here, not the training RNG (dropout)
        )
        self.ahead, self.pending = iter(loader), iter(indices)
        self.next_index = next(self.pending)

    def get(self, index: int) -> dict[str, torch.Tensor]:
        if self.ahead is not None and index == self.next_index:
            got, batch = next(self.ahead)  # the loader keeps the sampler's order
            assert got == index, (got, index)
            self.next_index = next(self.pending, None)
            return batch
        return self.batches[index][1]

    def close(self) -> None:
        self.ahead, self.pending, self.next_index = None, iter(()), None
