"""Last-prompt-token hidden states from one batched prefill, by forward hooks on the decoder layers,
and the swap-pair features built from them (seed 004).

The seed's extractors hook every layer and call generate(), keeping the prefill's last token; the
features need only the prefill, so here one forward pass over a left-padded batch runs until the
deepest requested layer and stops (the rest of the model never runs). With left padding the last
position is every sample's last prompt token.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, ProcessorMixin

from vlmflow.architectures.registry import architecture
from vlmflow.core.errors import InputError
from vlmflow.core.gpu_memory import halving_batch_size, inject_oom
from vlmflow.core.io import atomic_write
from vlmflow.core.prompts import encode_batch, generate_encoded
from vlmflow.core.records import Record
from vlmflow.core.settings import GenerationSettings
from vlmflow.core.shards import shard_of
from vlmflow.probing.metrics import check_answer


class _Done(Exception):
    """Raised by the hook of the deepest requested layer: nothing after it is needed."""


def resolve_layers(requested: Sequence[int] | None, num_layers: int) -> list[int]:
    """Layer indices (negative from the end) as sorted non-negative indices; None means all."""
    if requested is None:
        return list(range(num_layers))
    bad = [i for i in requested if not -num_layers <= i < num_layers]
    if bad:
        raise ValueError(f"layers {bad} out of range for a {num_layers}-layer language model")
    return sorted({i % num_layers for i in requested})


def hooked_layers(model: PreTrainedModel) -> tuple[str, torch.nn.ModuleList]:
    """The decoder layers whose outputs the hooks read; a family without hook support fails here."""
    arch = architecture(model)
    arch.require("hooks")
    return arch.decoder_layers(model)


@torch.inference_mode()
def last_token_states(
    model: PreTrainedModel, inputs: dict[str, torch.Tensor], layers: Sequence[int]
) -> dict[int, np.ndarray]:
    """{layer: (batch, hidden) float32} of the last position after each requested decoder layer,
    from one prefill that stops after the deepest of them."""
    _, modules = hooked_layers(model)
    wanted = resolve_layers(layers, len(modules))
    states: dict[int, np.ndarray] = {}

    def hook(index: int):
        def keep(_module, _args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            states[index] = hidden[:, -1, :].float().cpu().numpy()
            if index == wanted[-1]:
                raise _Done

        return keep

    handles = [modules[i].register_forward_hook(hook(i)) for i in wanted]
    try:
        (model.model if hasattr(model, "model") else model)(**inputs, use_cache=False)
    except _Done:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return states


def swap_pairs(records: Sequence[Record]) -> list[tuple[Record, Record]]:
    """(original, swapped) record pairs, matched by `source["pair_id"]` and `source["role"]`."""
    by_pair: dict[str, dict[str, Record]] = {}
    for record in records:
        source = record.source
        if "pair_id" not in source or source.get("role") not in ("orig", "swap"):
            raise InputError(
                record.dataset,
                "not a swap-pair record (needs source.pair_id and source.role)",
                record=record.question_id,
                field="source",
            )
        by_pair.setdefault(str(source["pair_id"]), {})[source["role"]] = record
    unpaired = [pid for pid, roles in by_pair.items() if len(roles) != 2]
    if unpaired:
        raise InputError(records[0].dataset, f"{len(unpaired)} pairs lack their other question, e.g. {unpaired[:3]}")
    return [(roles["orig"], roles["swap"]) for roles in by_pair.values()]


def pair_shard(records: Sequence[Record], label: str, batch_size: int) -> list[Record]:
    """The records of shard `label`'s pairs, cut where a batch of the unsharded extraction ends and a
    pair ends: every batch it runs is one the unsharded run runs, so the gathered arrays are equal."""
    pairs_per_unit = batch_size // math.gcd(batch_size, 2)  # lcm(batch_size, 2) records
    return [record for pair in shard_of(swap_pairs(records), label, pairs_per_unit) for record in pair]


@torch.inference_mode()
def extract_swap_features(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    records: Sequence[Record],
    settings: GenerationSettings,
    layers: Sequence[int] | None,
    dtype: str = "float16",
    log: logging.Logger | None = None,
) -> dict[str, np.ndarray]:
    """Original, swapped and delta vectors per requested layer for every pair, with ids,
    categories, groups, answers and correctness: the arrays of one NPZ.

    Features come from one batched prefill per batch of questions; answers from a separate short
    greedy generation (`settings.max_new_tokens`)."""
    pairs = swap_pairs(records)
    ordered = [record for pair in pairs for record in pair]  # orig, swap, orig, swap, ...
    _, modules = hooked_layers(model)
    wanted = resolve_layers(layers, len(modules))

    def extract(batch_size: int) -> tuple[dict[int, list[np.ndarray]], list[str]]:
        states: dict[int, list[np.ndarray]] = {layer: [] for layer in wanted}
        answers: list[str] = []
        for start in tqdm(range(0, len(ordered), batch_size), desc="swap features", unit="batch"):
            batch = ordered[start : start + batch_size]
            inject_oom(len(batch))
            inputs = encode_batch(model, processor, batch, settings)
            for layer, values in last_token_states(model, dict(inputs), wanted).items():
                states[layer].append(values)
            answers += generate_encoded(model, processor, inputs, settings.max_new_tokens)
        return states, answers

    # out of device memory: start again with half the batch (nothing is written until the end)
    states, answers = halving_batch_size(extract, settings.batch_size, log, "batch")
    orig_answers, swap_answers = answers[0::2], answers[1::2]
    out: dict[str, np.ndarray] = {
        "layers": np.array(wanted),
        "pair_id": np.array([o.source["pair_id"] for o, _ in pairs]),
        "category": np.array([o.source["category"] for o, _ in pairs]),
        "group": np.array([o.source["group"] for o, _ in pairs]),
        "pred_orig": np.array(orig_answers),
        "pred_swap": np.array(swap_answers),
        "correct_orig": np.array([check_answer(a, o.answers[0]) for a, (o, _) in zip(orig_answers, pairs)]),
        "correct_swap": np.array([check_answer(a, s.answers[0]) for a, (_, s) in zip(swap_answers, pairs)]),
    }
    hidden = model.config.get_text_config().hidden_size
    for layer in wanted:
        both = np.concatenate(states[layer]) if states[layer] else np.zeros((0, hidden), np.float32)
        orig, swap = both[0::2], both[1::2]
        out[f"orig_L{layer}"] = orig.astype(dtype)
        out[f"swap_L{layer}"] = swap.astype(dtype)
        out[f"delta_L{layer}"] = (swap - orig).astype(dtype)  # from float32 states, then cast
    return out


def cross_group_arrays(pairs: dict[str, np.ndarray], vertical: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """The quads' arrays (the seed's cross_group_vectors NPZ): per quad its vertical delta and the
    delta of the distance pair on the same scene (joined by pair_id), categories and correctness.
    `vertical` is None when no scene has a vertical relation: zero quads, same keys."""
    layers = pairs["layers"]
    if vertical is None:
        rows: list[int] = []
        vertical = {
            "pair_id": np.array([], dtype=str),
            "category": np.array([], dtype=str),
            "correct_orig": np.array([], dtype=bool),
            "correct_swap": np.array([], dtype=bool),
        }
        vertical |= {f"delta_L{n}": pairs[f"delta_L{n}"][:0] for n in layers}
    else:
        index = {str(pid): i for i, pid in enumerate(pairs["pair_id"])}
        rows = [index[str(pid)] for pid in vertical["pair_id"]]
    out = {
        "layers": layers,
        "pair_id": vertical["pair_id"],
        "category_vertical": vertical["category"],
        "category_distance": pairs["category"][rows],
        "correct_vertical": vertical["correct_orig"] & vertical["correct_swap"],
        "correct_distance": pairs["correct_orig"][rows] & pairs["correct_swap"][rows],
    }
    for n in layers:
        out[f"delta_vert_L{n}"] = vertical[f"delta_L{n}"]
        out[f"delta_dist_L{n}"] = pairs[f"delta_L{n}"][rows]
    return out


def concatenate_arrays(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays of consecutive shards as one extraction's: rows concatenated, `layers` shared."""
    layers = parts[0]["layers"]
    if any(not np.array_equal(part["layers"], layers) for part in parts):
        raise ValueError(f"shards extracted different layers: {[part['layers'].tolist() for part in parts]}")
    rows = [part for part in parts if len(part["pair_id"])]
    return {
        key: layers if key == "layers" else np.concatenate([part[key] for part in rows or parts[:1]])
        for key in parts[0]
    }


def gather_shards(
    vectors: Sequence[str | Path], verticals: Sequence[str | Path], records: Sequence[Record]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The shards' NPZs (in shard order) as one extraction's vectors and cross-group arrays, after
    checking that together they hold every swap pair of `records`, in order."""
    pairs = concatenate_arrays([read_npz(path) for path in vectors])
    vertical = concatenate_arrays([read_npz(path) for path in verticals])
    expected = [str(orig.source["pair_id"]) for orig, _ in swap_pairs(records)]
    if [str(pid) for pid in pairs["pair_id"]] != expected:
        raise ValueError(
            f"the {len(vectors)} shards hold {len(pairs['pair_id'])} swap pairs for {len(expected)} in the "
            f"dataset (or out of order): rerun the shards ({', '.join(map(str, vectors))})"
        )
    return pairs, cross_group_arrays(pairs, vertical if len(vertical["pair_id"]) else None)


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path) as arrays:
        return dict(arrays)


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Compressed NPZ, written atomically."""
    with atomic_write(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)
