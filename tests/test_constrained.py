"""Closed questions: decoding never leaves a record's candidates; batched ranking is exact."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import TINY_SPECS, make_records
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmflow.core.models import load_vlm
from vlmflow.core.prompts import build_messages, load_image, prompt_and_target
from vlmflow.core.settings import GenerationSettings
from vlmflow.vqa.constrained import (
    CandidateTrie,
    candidate_sequences,
    constrained_generate,
    rank_candidates,
)
from vlmflow.vqa.inference import generate_batch

POOL = [
    "red", "green", "blue", "yellow", "square", "circle", "yes", "no", "1", "2", "3", "left",
    "right", "paris is", "11-20mm",
]  # fmt: skip
SETTINGS = GenerationSettings(batch_size=2, max_new_tokens=12)
FAMILIES = sorted(TINY_SPECS)

candidate_sets = st.lists(st.sampled_from(POOL), min_size=2, max_size=4, unique=True)


@pytest.fixture(scope="module")
def vlms(tiny_checkpoints):
    """Each family's tiny model and processor, loaded once for the module."""
    return {family: load_vlm(tiny_checkpoints[family], device="cpu") for family in FAMILIES}


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return make_records(tmp_path_factory.mktemp("constrained"), 3)


def test_trie_allows_only_candidate_continuations():
    eos, pad = 2, 0
    trie = CandidateTrie([[5, 6, eos], [5, 7, 8, eos], [9, eos]], eos_id=eos, pad_id=pad)
    assert sorted(trie.allowed([])) == [5, 9]
    assert sorted(trie.allowed([5])) == [6, 7], "branching after a shared first token"
    assert trie.allowed([5, 7]) == [8]
    assert trie.allowed([5, 7, 8]) == [eos]
    assert trie.allowed([9]) == [eos]
    assert trie.allowed([5, 6, eos]) == [eos, pad], "a complete candidate may only end"
    assert trie.allowed([5, 7, 8, eos, pad, pad]) == [eos, pad], "a finished row is padded"
    assert trie.max_length == 4
    for prefix in ([6], [5, 8], [9, eos, 5]):
        with pytest.raises(ValueError):
            trie.allowed(prefix)
    with pytest.raises(ValueError, match="end with eos"):
        CandidateTrie([[5, 6]], eos_id=eos)
    with pytest.raises(ValueError, match="at least one"):
        CandidateTrie([], eos_id=eos)


@pytest.mark.parametrize("family", FAMILIES)
def test_candidate_sequences_end_with_end_of_turn(family, vlms):
    _, processor = vlms[family]
    tokenizer = processor.tokenizer
    for sequence, candidate in zip(candidate_sequences(processor, "What?", POOL, SETTINGS), POOL, strict=True):
        assert sequence[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(sequence, skip_special_tokens=True).strip() == candidate


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=12, deadline=None)
@given(candidates=candidate_sets)
def test_constrained_answer_is_a_candidate(family, vlms, records, candidates):
    model, processor = vlms[family]
    record = replace(records[0], candidates=candidates)
    assert constrained_generate(model, processor, [record], SETTINGS)[0] in candidates


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=12, deadline=None)
@given(sets=st.lists(candidate_sets, min_size=3, max_size=3, unique_by=frozenset))
def test_each_row_answers_from_its_own_candidates(family, vlms, records, sets):
    model, processor = vlms[family]
    batch = [replace(r, candidates=c) for r, c in zip(records, sets, strict=True)]
    answers = constrained_generate(model, processor, batch, SETTINGS)
    assert all(answer in c for answer, c in zip(answers, sets, strict=True))


@pytest.mark.parametrize("family", FAMILIES)
def test_single_candidate_is_generated(family, vlms, records):
    model, processor = vlms[family]
    for candidate in ("11-20mm", "paris is", "red"):
        record = replace(records[1], candidates=[candidate])
        assert constrained_generate(model, processor, [record], SETTINGS) == [candidate]


def test_rows_without_candidates_generate_freely(vlms, records):
    model, processor = vlms["qwen2_vl"]
    batch = [records[0], replace(records[1], candidates=["yes", "no"])]
    free = constrained_generate(model, processor, batch, SETTINGS)[0]
    assert free == generate_batch(model, processor, batch, SETTINGS)[0].strip()


@torch.inference_mode()
def reference_score(model, processor, record, candidate) -> float:
    """Summed log-probability of one candidate's answer + end-of-turn tokens, unbatched."""
    messages = build_messages(record.question, SETTINGS)
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    target = prompt_and_target(processor, record.question, candidate, SETTINGS)[1]
    inputs = processor(text=[prompt + target], images=[load_image(record)], return_tensors="pt")
    log_probs = model(**inputs).logits[0].log_softmax(dim=-1)
    ids = processor.tokenizer(target, add_special_tokens=False)["input_ids"]
    start = inputs["input_ids"].shape[1] - len(ids)
    assert inputs["input_ids"][0, start:].tolist() == ids
    return sum(log_probs[start - 1 + i, token].item() for i, token in enumerate(ids))


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_ranking_equals_separate_forward_passes(family, vlms, records):
    model, processor = vlms[family]
    sets = [["red", "green", "paris is"], ["11-20mm", "yes"], ["left", "right", "3", "circle"]]
    batch = [replace(r, candidates=c) for r, c in zip(records, sets, strict=True)]
    batch[1] = replace(batch[1], question="How many circles are there?")  # prompts differ in length
    ranked = rank_candidates(model, processor, batch, SETTINGS)  # chunks of 2 records
    assert len(ranked) == len(batch)
    for record, (choice, scores) in zip(batch, ranked, strict=True):
        reference = [reference_score(model, processor, record, c) for c in record.candidates]
        assert scores == pytest.approx(reference, abs=1e-4)
        assert choice == record.candidates[max(range(len(scores)), key=scores.__getitem__)]
    assert processor.tokenizer.padding_side == "left", "ranking restores left padding"
