"""The forward clock: outermost calls counted once, layer-driven runs counted, hooks removed."""

from __future__ import annotations

import json
import time

import pytest
import torch
from conftest import make_records

from vlmflow.core.models import load_vlm
from vlmflow.core.prompts import encode_batch, generate_encoded
from vlmflow.core.settings import GenerationSettings
from vlmflow.core.timing import ForwardClock, timed_modules
from vlmflow.probing.extraction import last_token_states


@pytest.mark.parametrize("family", ["qwen2_vl", "llava"])
def test_generation_counts_one_call_per_forward(tiny_checkpoints, tmp_path, family):
    model, processor = load_vlm(tiny_checkpoints[family], device="cpu")
    inputs = encode_batch(model, processor, make_records(tmp_path, 3), GenerationSettings(batch_size=3))
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    start = time.perf_counter()
    with ForwardClock(model) as clock:
        generate_encoded(model, processor, inputs, 4)
    wall = time.perf_counter() - start
    handle.remove()
    # every model forward is one outermost call (its layers and tower nest inside); generate() may
    # also call a timed submodule on its own
    assert len(calls) <= clock.calls <= len(calls) + 1 and 0 < clock.seconds < wall
    assert all(not module._forward_hooks and not module._forward_pre_hooks for module in timed_modules(model))


def test_layer_driven_and_interrupted_passes_are_counted(tiny_checkpoints, tmp_path):
    model, processor = load_vlm(tiny_checkpoints["qwen2_vl"], device="cpu")
    inputs = encode_batch(model, processor, make_records(tmp_path, 2), GenerationSettings(batch_size=2))
    with ForwardClock(model) as clock:
        last_token_states(model, dict(inputs), [0])  # stops inside layer 0 by an exception
        hidden = torch.zeros(1, 3, model.config.text_config.hidden_size)
        position = torch.arange(3).view(1, 1, 3).expand(3, 1, 3)
        embeddings = model.model.language_model.rotary_emb(hidden, position)
        model.model.language_model.layers[1](hidden, position_embeddings=embeddings)  # as the pruning engine does
    assert clock.calls == 2 and clock._depth == 0
    clock.write(tmp_path / "job.log")
    assert json.loads((tmp_path / "job.timing.json").read_text())["forward_calls"] == 2
