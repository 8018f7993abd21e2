"""Hidden-state extraction: hooks equal output_hidden_states, the prefill stops early, swap features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_records

from vlmflow.architectures.base import UnsupportedStage
from vlmflow.core.models import load_vlm
from vlmflow.core.prompts import build_messages, load_image
from vlmflow.core.records import Record
from vlmflow.core.settings import GenerationSettings
from vlmflow.probing.extraction import (
    extract_swap_features,
    gather_shards,
    hooked_layers,
    last_token_states,
    pair_shard,
    swap_pairs,
    write_npz,
)

SETTINGS = GenerationSettings(batch_size=3, max_new_tokens=3)


def encode(processor, records, extra_words=True):
    texts = [
        processor.apply_chat_template(
            build_messages(r.question + " please" * (i % 3 if extra_words else 0), SETTINGS),
            add_generation_prompt=True,
            tokenize=False,
        )
        for i, r in enumerate(records)
    ]
    return processor(text=texts, images=[load_image(r) for r in records], padding=True, return_tensors="pt")


@pytest.mark.parametrize("family", ["qwen2_vl", "llava"])
def test_hooks_equal_output_hidden_states(tiny_checkpoints, tmp_path, family):
    model, processor = load_vlm(tiny_checkpoints[family], device="cpu")
    inputs = encode(processor, make_records(tmp_path, 4))  # ragged prompts: a left-padded batch
    path, layers = hooked_layers(model)
    states = last_token_states(model, dict(inputs), None)
    with torch.inference_mode():
        reference = model(**inputs, output_hidden_states=True).hidden_states
    last = len(layers) - 1
    for layer in range(last):
        np.testing.assert_array_equal(states[layer], reference[layer + 1][:, -1].float().numpy())
    # transformers' last hidden state has the final norm applied
    norm = model.model.language_model.norm
    with torch.inference_mode():
        normed = norm(torch.from_numpy(states[last])).numpy()
    np.testing.assert_allclose(normed, reference[-1][:, -1].float().numpy(), atol=1e-5)
    assert path == "model.language_model.layers"


def test_the_prefill_stops_after_the_deepest_requested_layer(tiny_checkpoints, tmp_path):
    model, processor = load_vlm(tiny_checkpoints["qwen2_vl"], device="cpu")
    _, layers = hooked_layers(model)
    ran = []
    handles = [layer.register_forward_hook(lambda _m, _a, _o, i=i: ran.append(i)) for i, layer in enumerate(layers)]
    states = last_token_states(model, dict(encode(processor, make_records(tmp_path, 2))), [0])
    for handle in handles:
        handle.remove()
    assert list(states) == [0] and ran == [0]


def test_an_unknown_family_is_a_clear_error(tiny_checkpoints):
    model, _ = load_vlm(tiny_checkpoints["qwen2_vl"], device="cpu")
    model.config.model_type = "blip_x"
    with pytest.raises(UnsupportedStage, match=r"model family 'blip_x' does not support stage 'hooks'"):
        hooked_layers(model)


def swap_records(folder, n_pairs):
    base = make_records(folder, n_pairs)
    out = []
    for i, r in enumerate(base):
        category, opposite = ("left", "right") if i % 2 else ("above", "under")
        group = "horizontal" if i % 2 else "vertical"
        for role, answer, question in (
            ("orig", category, "Is the square left or right of the circle?"),
            ("swap", opposite, "Is the circle left or right of the square?"),
        ):
            out.append(
                Record(
                    f"{i}_{role}",
                    r.image,
                    question,
                    [answer],
                    "swap",
                    candidates=[category, opposite],
                    source={"pair_id": str(i), "role": role, "category": category, "group": group},
                )
            )
    return out


def test_swap_features_are_paired_deltas_with_correctness(tiny_checkpoints, tmp_path):
    model, processor = load_vlm(tiny_checkpoints["qwen2_vl"], device="cpu")
    records = swap_records(tmp_path / "img", 3)
    arrays = extract_swap_features(model, processor, records[::-1], SETTINGS, layers=[0, -1], dtype="float32")
    assert list(arrays["layers"]) == [0, 1]
    assert sorted(arrays["pair_id"]) == ["0", "1", "2"] and arrays["orig_L1"].shape == (3, 32)
    np.testing.assert_allclose(arrays["delta_L0"], arrays["swap_L0"] - arrays["orig_L0"], atol=1e-6)
    assert arrays["correct_orig"].dtype == bool and len(arrays["pred_swap"]) == 3
    # the features of the original question of pair 0 are those of its own prefill
    first = next(r for r in records if r.question_id == "0_orig")
    single = last_token_states(model, dict(encode(processor, [first], extra_words=False)), [0])[0][0]
    row = list(arrays["pair_id"]).index("0")
    np.testing.assert_allclose(arrays["orig_L0"][row], single, atol=1e-4)
    write_npz(tmp_path / "v.npz", arrays)
    with np.load(tmp_path / "v.npz") as saved:
        assert set(saved.files) == set(arrays)


def test_a_pair_without_its_other_question_is_an_error(tmp_path):
    records = swap_records(tmp_path, 2)
    with pytest.raises(ValueError, match="lack their other question"):
        swap_pairs(records[:3])


@pytest.mark.parametrize("batch_size", [1, 2, 3, 4])
def test_pair_shards_cover_every_pair_once_cut_at_batches_and_pairs(tmp_path, batch_size):
    records = swap_records(tmp_path, 7)
    ordered = [r for pair in swap_pairs(records) for r in pair]
    for count in (1, 2, 3, 9):
        parts = [pair_shard(records, f"{i}-of-{count}", batch_size) for i in range(1, count + 1)]
        assert [r.question_id for part in parts for r in part] == [r.question_id for r in ordered]
        offsets = np.cumsum([len(part) for part in parts])[:-1]
        assert all(offset % 2 == 0 and (offset % batch_size == 0 or offset == len(ordered)) for offset in offsets)


def test_gathered_shards_equal_one_extraction_and_a_missing_shard_is_an_error(tiny_checkpoints, tmp_path):
    model, processor = load_vlm(tiny_checkpoints["qwen2_vl"], device="cpu")
    records = swap_records(tmp_path / "img", 5)
    settings = GenerationSettings(batch_size=2, max_new_tokens=2)
    whole = extract_swap_features(model, processor, records, settings, layers=[0, -1], dtype="float32")
    vectors, verticals = [], []
    for label in ("1-of-3", "2-of-3", "3-of-3"):
        part = pair_shard(records, label, settings.batch_size)
        write_npz(
            tmp_path / f"{label}.vectors.npz",
            extract_swap_features(model, processor, part, settings, [0, -1], "float32"),
        )
        write_npz(
            tmp_path / f"{label}.vertical.npz",
            extract_swap_features(model, processor, [], settings, [0, -1], "float32"),
        )
        vectors.append(tmp_path / f"{label}.vectors.npz")
        verticals.append(tmp_path / f"{label}.vertical.npz")
    pairs, cross = gather_shards(vectors, verticals, records)
    assert list(pairs) == list(whole)
    for key, values in whole.items():
        assert np.array_equal(pairs[key], values), key
    assert len(cross["pair_id"]) == 0 and cross["delta_vert_L1"].shape == (0, 32)
    with pytest.raises(ValueError, match="shards hold 3 swap pairs for 5"):
        gather_shards(vectors[:2], verticals[:2], records)
