"""Data-parallel training inside one job: N processes launched by torchrun's API, one per device.

`launch(fn, N, device, ...)` runs `fn` in N processes (torch.distributed.elastic, c10d rendezvous
on 127.0.0.1, no restarts) joined in a process group: NCCL with one GPU per rank (`cuda:LOCAL_RANK`
of the devices the job's GPU slot made visible), else gloo on the CPU with the job's threads split
between the ranks. A trainer then stays one loop: every rank computes its share of the step's
samples, `sum_gradients` adds the gradients up, and rank 0 alone writes logs and checkpoints.
Outside a process group every helper here is the single-process identity, so the same code runs
with one process and no group at all.

A child's output (rank-prefixed) and its traceback reach the parent's stdout, so the rule's log;
a failed child stops the others and raises `DataParallelFailure` with its error.
"""

from __future__ import annotations

import io
import logging
import os
import random
import signal
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

T = TypeVar("T")

# Test hook: "<rank>:<step>" makes that rank SIGKILL itself after finishing (and checkpointing)
# that optimizer step, as a preempted node would; the tests kill a data-parallel run with it.
INJECT_KILL = "VLMFLOW_INJECT_KILL"
BUCKET_BYTES = 64 * 2**20  # gradients are summed in flat buckets of this size
# Rank 0 alone evaluates, checkpoints and exports while the others wait in a collective.
TIMEOUT = timedelta(hours=2)


class DataParallelFailure(RuntimeError):
    """A rank of a data-parallel job failed; the message holds its error and traceback."""


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this process writes the job's files (rank 0, or the only process)."""
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def check_split(name: str, value: int, processes: int) -> None:
    """`processes` data-parallel processes must share a step's `value` (grad_accum, batch_size) evenly."""
    if processes < 1 or value % processes:
        raise ValueError(
            f"gpus: {processes} needs {name} divisible by {processes} (each process takes {name} / gpus "
            f"of every step), got {name} {value}: set {name} to a multiple of {processes} "
            "(and keep the samples per step you want), or change gpus"
        )


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def sum_over_ranks(values: Sequence[float]) -> list[float]:
    """Each value summed over the ranks, in float64 (the values themselves in a single process)."""
    if not dist.is_initialized():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor)
    return tensor.tolist()


def any_rank(flag: bool) -> bool:
    """Whether `flag` is true on at least one rank (every rank gets the same answer)."""
    return sum_over_ranks([float(flag)])[0] > 0


def gather_to_main(obj: Any) -> list[Any]:
    """Every rank's `obj` (what `torch.load(weights_only=True)` reads back) in rank order on rank 0;
    [obj] in a single process, [] on the other ranks."""
    if not dist.is_initialized():
        return [obj]
    buffer = io.BytesIO()
    torch.save(obj, buffer)  # as bytes: gather_object mis-pickles tensors
    gathered: list[Any] | None = [None] * world_size() if is_main() else None
    dist.gather_object(buffer.getvalue(), gathered, dst=0)
    return [torch.load(io.BytesIO(data), weights_only=True) for data in gathered or []]


def _buckets(grads: Sequence[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    """Gradients grouped by dtype and device, in runs of about BUCKET_BYTES."""
    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for grad in grads:
        groups.setdefault((grad.dtype, grad.device), []).append(grad)
    for group in groups.values():
        bucket: list[torch.Tensor] = []
        size = 0
        for grad in group:
            bucket.append(grad)
            size += grad.numel() * grad.element_size()
            if size >= BUCKET_BYTES:
                yield bucket
                bucket, size = [], 0
        if bucket:
            yield bucket


def sum_gradients(params: Sequence[torch.nn.Parameter]) -> None:
    """Replace each parameter's gradient by its sum over the ranks (no-op in a single process).

    A parameter no rank has a gradient for keeps None, as in one process (AdamW then leaves it
    alone); one some ranks lack (a shard without frames) counts zero there."""
    if not dist.is_initialized() or not params:
        return
    present = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=_collective_device())
    dist.all_reduce(present)
    grads = []
    for param, count in zip(params, present.tolist(), strict=True):
        if count:
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            grads.append(param.grad)
    for bucket in _buckets(grads):
        flat = torch.cat([g.reshape(-1) for g in bucket])  # (sum of numel,)
        dist.all_reduce(flat)
        for grad, part in zip(bucket, flat.split([g.numel() for g in bucket]), strict=True):
            grad.copy_(part.view_as(grad))


def seed_rank(seed: int) -> None:
    """Give each rank after the first its own random streams (dropout), once the model is built
    alike everywhere; rank 0 keeps the stream a single process has."""
    if rank() > 0:
        rank_seed = seed * 1_000_003 + rank()
        random.seed(rank_seed)
        np.random.seed(rank_seed % 2**32)
        torch.manual_seed(rank_seed)


def inject_kill(step: int) -> None:
    """SIGKILL this process after `step` when `$VLMFLOW_INJECT_KILL` is "<this rank>:<step>"."""
    target = os.environ.get(INJECT_KILL)
    if target and target == f"{rank()}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Spawned children first import the parent's main script unless it is hidden: a Snakemake
    script has no `if __name__ == "__main__"` guard, so each child would run the whole job again."""
    main = sys.modules["__main__"]
    path = main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        if path is not None:
            main.__file__ = path


def _run_rank(
    fn: Callable[..., T],
    device: str,
    threads: int,
    deterministic: tuple[bool, bool],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> T:
    """A spawned child: join the process group, run `fn`, leave. Module-level so children import
    vlmflow (never the Snakemake script) to find it."""
    world, local_rank = int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    level = logging.INFO if os.environ["RANK"] == "0" else logging.WARNING  # the others repeat rank 0
    logging.basicConfig(stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(message)s", force=True)
    torch.set_num_threads(max(1, threads // world))
    torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
    gpu = torch.device("cuda", local_rank) if device != "cpu" and torch.cuda.is_available() else None
    if gpu:
        torch.cuda.set_device(gpu)  # "cuda" is this rank's device from here on
    dist.init_process_group("nccl" if gpu else "gloo", timeout=TIMEOUT, device_id=gpu)
    try:
        return fn(*args, device=device, **kwargs)
    finally:
        dist.destroy_process_group()


def _failure_text(error: ChildFailedError) -> str:
    """The first failed rank's error with its traceback (or the signal that killed it)."""
    failed_rank, failure = error.get_first_failure()
    message = failure.message
    if isinstance(message, dict):
        message = message.get("extraInfo", {}).get("py_callstack") or message.get("message")
    return f"rank {failed_rank} (exit code {failure.exitcode}):\n{message}"


def launch(fn: Callable[..., T], processes: int, device: str, *args: Any, **kwargs: Any) -> T:
    """`fn(*args, device=device, **kwargs)` in `processes` data-parallel processes; rank 0's result.

    `fn` must be a module-level function of the package. Each child gets the job's threads
    (`torch.get_num_threads()`) divided by `processes` and the parent's deterministic-algorithms
    setting. Raises DataParallelFailure with the first failed rank's traceback."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if processes > 1 and device != "cpu" and torch.cuda.is_available() and torch.cuda.device_count() < processes:
        raise ValueError(
            f"gpus: {processes} but this job sees {torch.cuda.device_count()} CUDA device(s); "
            "give it more GPUs (--resources gpu=N, the SLURM profile) or lower gpus"
        )
    deterministic = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    with tempfile.TemporaryDirectory(prefix="vlmflow-ranks-") as logs, _main_script_hidden():
        config = LaunchConfig(
            min_nodes=1,
            max_nodes=1,
            nproc_per_node=processes,
            rdzv_backend="c10d",
            rdzv_endpoint="127.0.0.1:0",  # port 0: the agent binds a free port itself
            run_id=uuid.uuid4().hex,
            role="rank",
            max_restarts=0,
            start_method="spawn",
            monitor_interval=0.1,
            # each rank's stdout/stderr go to a file there and, prefixed "[rankN]:", to ours
            logs_specs=DefaultLogsSpecs(log_dir=logs, redirects=Std.ALL, tee=Std.ALL),
        )
        try:
            results = elastic_launch(config, _run_rank)(
                fn, device, torch.get_num_threads(), deterministic, args, kwargs
            )
        except ChildFailedError as error:
            raise DataParallelFailure(f"data-parallel {fn.__name__} failed in {_failure_text(error)}") from None
    return results[0]
