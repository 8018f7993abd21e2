"""Visual-token pruning inside the language model: no-op at keep 1, original positions after
pruning, a KV cache that stays right, the guide's importance, and batch-size independence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import CORPUS, make_records

from vlmflow.core.models import load_vlm
from vlmflow.core.prompts import build_messages, load_image
from vlmflow.core.settings import GenerationSettings, PruningSettings
from vlmflow.guided.attention_stats import read_importance
from vlmflow.guided.importance import (
    ImportanceAccumulator,
    confidence,
    random_scores,
    sequence_probability,
)
from vlmflow.guided.pruning import LanguageInputs, generate, language_model, prepare_inputs
from vlmflow.guided.runner import PrunedRunner, load_pair, run_pruned
from vlmflow.zoo.build import build_checkpoint

TEXT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 3,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
}
# 112 px: 16 visual tokens per image in both families, so keep ratios select real subsets.
SPECS = {
    "qwen2_vl": {
        "family": "qwen2_vl",
        "seed": 3,
        "vocab_size": 320,
        "image_size": 112,
        "vision": {"depth": 1, "embed_dim": 16, "num_heads": 2, "mlp_ratio": 2},
        "text": TEXT,
    },
    "llava": {
        "family": "llava",
        "seed": 3,
        "vocab_size": 320,
        "image_size": 112,
        "vision": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2},
        "text": TEXT,
    },
}
SETTINGS = GenerationSettings(batch_size=4, max_new_tokens=5)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("prune_zoo")
    for family, spec in SPECS.items():
        build_checkpoint(spec, CORPUS, root / family)
    return {family: root / family for family in SPECS}


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return make_records(tmp_path_factory.mktemp("prune_images"), 5)


def encode(model, processor, records, questions=None):
    texts = [
        processor.apply_chat_template(
            build_messages(q or r.question, SETTINGS), add_generation_prompt=True, tokenize=False
        )
        for r, q in zip(records, questions or [None] * len(records))
    ]
    return processor(text=texts, images=[load_image(r) for r in records], padding=True, return_tensors="pt")


def special(processor):
    return {"eos_token_ids": [processor.tokenizer.eos_token_id], "pad_token_id": processor.tokenizer.pad_token_id}


def ragged(records):
    """Questions of different lengths, so the batch is really left-padded."""
    return [r.question + " Look closely at the picture." * (i % 3) for i, r in enumerate(records)]


@pytest.mark.parametrize("family", list(SPECS))
def test_keep_all_is_the_unpruned_model(checkpoints, records, family):
    model, processor = load_vlm(checkpoints[family], device="cpu")
    inputs = encode(model, processor, records, ragged(records))
    with torch.inference_mode():
        reference = model.generate(**inputs, max_new_tokens=5, do_sample=False, min_new_tokens=5)[
            :, inputs["input_ids"].shape[1] :
        ]
    language = prepare_inputs(model, dict(inputs))
    scores = random_scores([r.question_id for r in records], language.visual_counts, seed=0)
    ours = generate(model, language, max_new_tokens=5, keep_ratio=1.0, prune_at=1, scores=scores, **special(processor))
    assert ours.kept is None
    assert torch.equal(ours.tokens, reference[:, : ours.tokens.shape[1]])


class PositionSpy:
    """Records the position ids the language model's rotary embedding is asked for."""

    def __init__(self, model):
        self.rotary = language_model(model).rotary_emb
        self.calls: list[torch.Tensor] = []
        self.handle = self.rotary.register_forward_pre_hook(lambda _m, args: self.calls.append(args[1].clone()))


@pytest.mark.parametrize("family", list(SPECS))
def test_kept_tokens_keep_their_original_positions(checkpoints, records, family):
    model, processor = load_vlm(checkpoints[family], device="cpu")
    language = prepare_inputs(model, dict(encode(model, processor, records, ragged(records))))
    scores = random_scores([r.question_id for r in records], language.visual_counts, seed=1)
    spy = PositionSpy(model)
    out = generate(model, language, max_new_tokens=1, keep_ratio=0.5, prune_at=1, scores=scores, **special(processor))
    spy.handle.remove()
    full, pruned = spy.calls[0], spy.calls[1]  # the prefill before layer K, then from K on
    assert torch.equal(full, language.positions)
    removed = language.visual_counts[0] - len(out.kept[0])
    assert pruned.shape[-1] == language.positions.shape[-1] - removed
    for b, kept in enumerate(out.kept):
        assert len(kept) == language.visual_counts[b] // 2
        top = torch.argsort(-scores[b], stable=True)[: len(kept)]
        assert torch.equal(torch.sort(top).values, kept)  # the top-scored tokens, in original order
        keep = ~language.visual[b]
        keep[language.visual[b].nonzero().squeeze(1)[kept]] = True
        # every remaining token, the kept visual ones included, carries its original position ids
        assert torch.equal(pruned[..., b, :], language.positions[..., b, keep])


def test_pruned_prefill_equals_the_model_on_the_kept_tokens(checkpoints, records):
    """K = 0: the decode model's first token is the language model run on only the kept tokens at
    their original positions (Qwen2-VL's 3D rotary positions)."""
    model, processor = load_vlm(checkpoints["qwen2_vl"], device="cpu")
    language = prepare_inputs(model, dict(encode(model, processor, records[:1])))
    scores = random_scores(["x"], language.visual_counts, seed=2)
    out = generate(model, language, max_new_tokens=1, keep_ratio=0.25, prune_at=0, scores=scores, **special(processor))
    visual_at = language.visual[0].nonzero().squeeze(1)
    keep = ~language.visual[0]
    keep[visual_at[out.kept[0]]] = True
    with torch.inference_mode():
        hidden = language_model(model)(
            inputs_embeds=language.embeds[:, keep],
            position_ids=language.positions[:, :, keep],
            attention_mask=torch.ones(1, int(keep.sum()), dtype=torch.long),
        ).last_hidden_state
        expected = model.lm_head(hidden[:, -1]).log_softmax(-1)
    assert out.tokens[0, 0] == expected.argmax(-1)[0]
    assert out.logprobs[0, 0] == pytest.approx(float(expected.max()), abs=1e-5)


@torch.inference_mode()
def extend(language: LanguageInputs, model, tokens: torch.Tensor) -> LanguageInputs:
    """The prompt plus already generated tokens, as a fresh prefill (no cache)."""
    embeds = torch.cat([language.embeds, language_model(model).get_input_embeddings()(tokens)], 1)
    last = language.positions[..., -1:]
    steps = torch.arange(1, tokens.shape[1] + 1)
    if language.positions.dim() == 3:
        last = language.positions.amax(0, keepdim=True)[..., -1:].expand(3, -1, -1)
    positions = torch.cat([language.positions, last + steps], -1)
    ones = torch.ones(tokens.shape, dtype=torch.bool)
    return LanguageInputs(
        embeds, positions, torch.cat([language.mask, ones], 1), torch.cat([language.visual, ~ones], 1)
    )


@pytest.mark.parametrize("family", list(SPECS))
def test_generation_after_pruning_uses_the_cache_correctly(checkpoints, records, family):
    """Every token generated with the pruned KV cache equals a from-scratch prefill of prompt +
    tokens so far, pruned the same way."""
    model, processor = load_vlm(checkpoints[family], device="cpu")
    language = prepare_inputs(model, dict(encode(model, processor, records[:3], ragged(records[:3]))))
    scores = random_scores(["a", "b", "c"], language.visual_counts, seed=3)
    ids = {"eos_token_ids": [-1], "pad_token_id": processor.tokenizer.pad_token_id}  # never stop early
    cached = generate(model, language, max_new_tokens=4, keep_ratio=0.4, prune_at=1, scores=scores, **ids)
    for t in range(1, 4):
        fresh = generate(
            model,
            extend(language, model, cached.tokens[:, :t]),
            max_new_tokens=1,
            keep_ratio=0.4,
            prune_at=1,
            scores=scores,
            **ids,
        )
        assert torch.equal(fresh.tokens[:, 0], cached.tokens[:, t])
        torch.testing.assert_close(fresh.logprobs[:, 0], cached.logprobs[:, t], atol=1e-4, rtol=0)


def test_fastv_needs_attention_weights_and_a_layer_before_k(checkpoints, records):
    model, processor = load_vlm(checkpoints["qwen2_vl"], device="cpu")
    language = prepare_inputs(model, dict(encode(model, processor, records[:2])))
    with pytest.raises(ValueError, match="K >= 1"):
        generate(model, language, max_new_tokens=2, keep_ratio=0.5, prune_at=0, fastv=True, **special(processor))
    with pytest.raises(RuntimeError, match="eager"):
        generate(model, language, max_new_tokens=2, keep_ratio=0.5, prune_at=1, fastv=True, **special(processor))
    eager, _ = load_vlm(checkpoints["qwen2_vl"], device="cpu", attn_implementation="eager")
    out = generate(eager, language, max_new_tokens=2, keep_ratio=0.5, prune_at=1, fastv=True, **special(processor))
    assert [len(k) for k in out.kept] == [8, 8]


def test_importance_counts_the_prompt_rows_after_the_image_and_active_generated_rows():
    visual = torch.tensor([[False, True, True, False, False]])
    inputs = LanguageInputs(torch.zeros(1, 5, 4), torch.arange(5)[None], torch.ones(1, 5, dtype=torch.bool), visual)
    accumulate = ImportanceAccumulator(inputs, num_layers=2, layers=[-1])
    weights = torch.zeros(1, 2, 5, 5)
    weights[0, :, 0, 1] = 100.0  # a row before the image: not counted
    weights[0, 0, 3, 1], weights[0, 1, 3, 2], weights[0, 0, 4, 2] = 0.5, 0.25, 0.125
    accumulate(0, weights * 7, None)  # layer 0 is not among the counted layers
    accumulate(1, weights, None)
    assert accumulate.scores()[0].tolist() == [0.5, 0.375]
    step = torch.zeros(1, 2, 1, 6)
    step[0, :, 0, 1] = 1.0
    accumulate(1, step, torch.tensor([False]))  # a finished sample's row does not count
    accumulate(1, step, torch.tensor([True]))
    assert accumulate.scores()[0].tolist() == [2.5, 0.375]


def test_random_ranking_is_per_question_not_per_batch():
    a = random_scores(["q1", "q2"], [16, 16], seed=0)
    b = random_scores(["q2"], [16], seed=0)
    assert torch.equal(a[1], b[0]) and not torch.equal(a[0], a[1])
    assert not torch.equal(random_scores(["q1"], [16], seed=1)[0], a[0])


@pytest.mark.parametrize("mode", [{}, {"guide_reasoning_mode": "short_cot"}, {"guide_text_mode": "short_rationale"}])
def test_batched_guided_run_equals_batch_size_one(checkpoints, records, mode):
    settings = PruningSettings(method="guided", keep_ratios=(1.0, 0.5, 0.25), prune_layer=0.34, **mode)
    pair = load_pair(checkpoints["qwen2_vl"], checkpoints["qwen2_vl"], settings, device="cpu")
    assert pair.shared_vision
    generation = GenerationSettings(batch_size=4, max_new_tokens=4, reasoning_tokens=6)
    runner = PrunedRunner(pair, generation, settings)
    batched = runner.answer(records[:4])
    single = [row for r in records[:4] for row in runner.answer([r])]
    for one, many in zip(single, batched):
        assert one["keep"] == many["keep"]
        assert one["guide"]["prediction"] == many["guide"]["prediction"]
        assert one["guide"]["confidence"] == pytest.approx(many["guide"]["confidence"], abs=1e-5)
        assert one["guide"]["consistency"] == pytest.approx(many["guide"]["consistency"], abs=1e-5)
        torch.testing.assert_close(
            torch.tensor(one["importance"]), torch.tensor(many["importance"]), atol=1e-4, rtol=1e-4
        )
        assert one.get("rationale") == many.get("rationale")


def test_shared_vision_gives_the_same_answers_as_two_towers(checkpoints, records):
    settings = PruningSettings(method="guided", keep_ratios=(0.5,))
    generation = GenerationSettings(batch_size=4, max_new_tokens=4)
    shared = PrunedRunner(
        load_pair(checkpoints["qwen2_vl"], checkpoints["qwen2_vl"], settings, device="cpu"), generation, settings
    )
    settings_two = PruningSettings(method="guided", keep_ratios=(0.5,), shared_vision="never")
    two = PrunedRunner(
        load_pair(checkpoints["qwen2_vl"], checkpoints["qwen2_vl"], settings_two, device="cpu"),
        generation,
        settings_two,
    )
    assert shared.pair.shared_vision and not two.pair.shared_vision
    for a, b in zip(shared.answer(records[:4]), two.answer(records[:4])):
        assert a["keep"] == b["keep"]
        torch.testing.assert_close(torch.tensor(a["importance"]), torch.tensor(b["importance"]), atol=1e-5, rtol=1e-5)


def test_shared_vision_always_fails_for_different_towers(checkpoints):
    settings = PruningSettings(method="guided", shared_vision="always")
    with pytest.raises(ValueError, match="cannot share"):
        load_pair(checkpoints["qwen2_vl"], checkpoints["llava"], settings, device="cpu")


def test_guide_and_decode_grids_must_correspond(checkpoints, records, tmp_path):
    small = dict(SPECS["qwen2_vl"], image_size=56)  # 4 visual tokens against the decode model's 16
    build_checkpoint(small, CORPUS, tmp_path / "small")
    settings = PruningSettings(method="guided", keep_ratios=(0.5,))
    runner = PrunedRunner(
        load_pair(checkpoints["qwen2_vl"], tmp_path / "small", settings, device="cpu"), SETTINGS, settings
    )
    assert not runner.pair.shared_vision
    with pytest.raises(ValueError, match="visual grids do not correspond"):
        runner.answer(records[:2])


def test_confidence_is_a_geometric_mean_and_consistency_a_product():
    half, quarter = torch.log(torch.tensor(0.5)), torch.log(torch.tensor(0.25))
    logprobs = torch.tensor([[half, half, 0.0], [quarter, 0.0, 0.0]])  # after EOS: 0
    assert confidence(logprobs, torch.tensor([2, 1])) == pytest.approx([0.5, 0.25])
    assert sequence_probability(logprobs) == pytest.approx([0.25, 0.25])


def test_a_crashed_guided_run_resumes_after_its_last_chunk(checkpoints, records, tmp_path):
    settings = PruningSettings(method="guided", keep_ratios=(1.0, 0.5))
    generation = GenerationSettings(batch_size=2, max_new_tokens=3, chunk_batches=1)
    runner = PrunedRunner(
        load_pair(checkpoints["qwen2_vl"], checkpoints["qwen2_vl"], settings, device="cpu"), generation, settings
    )
    key = {"run": "resume-test"}
    clean = tmp_path / "clean" / "rows.jsonl"
    run_pruned(runner, records, clean, key, tmp_path / "clean" / "importance.parquet")

    answer, calls = runner.answer, []

    def crash_on_third_batch(batch):
        calls.append(len(batch))
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return answer(batch)

    runner.answer = crash_on_third_batch
    out = tmp_path / "resumed" / "rows.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run_pruned(runner, records, out, key, tmp_path / "resumed" / "importance.parquet")
    assert not out.exists()
    runner.answer = answer
    assert run_pruned(runner, records, out, key, tmp_path / "resumed" / "importance.parquet") == 4
    assert out.read_text() == clean.read_text()
    resumed, whole = (
        read_importance(tmp_path / "resumed" / "importance.parquet"),
        read_importance(tmp_path / "clean" / "importance.parquet"),
    )
    assert list(resumed) == [r.question_id for r in records]
    assert all(np.allclose(resumed[q], whole[q]) for q in whole)
