"""The foveated VLM and its training: one visual token per frame reaches the LM, the modes are what
they claim, frozen groups stay put, each group learns at its own rate, a killed run resumes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from vlmflow.core.settings import FoveatedSettings
from vlmflow.foveated import motion
from vlmflow.foveated.data import FrameStore, read_samples
from vlmflow.foveated.evaluate import FrameBatches, evaluate
from vlmflow.foveated.model import FoveatedVLM, from_parts, load_frame_lm, text_loss
from vlmflow.foveated.query import encode_frames, query_frames
from vlmflow.foveated.trainer import FoveatedTrainer, optimizer_groups
from vlmflow.synth.videos import corpus_lines, write_shape_videos
from vlmflow.zoo.foveated import build_foveated_parts

SPEC = {
    "seed": 0,
    "vocab_size": 200,
    "image_size": 28,  # 2x2 patches
    "vision": {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "mlp_ratio": 2, "initializer_range": 0.1},
    "text": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "num_key_value_heads": 1, "tie_word_embeddings": True},
}  # fmt: skip
SETTINGS = FoveatedSettings(budget=8, batch_size=4, eval_every=1, val_samples=6, attention_samples=2,
                            checkpoint_every=1, lr_connector=1e-2, lr_vision=1e-3, lr_language=3e-3, grid=1)  # fmt: skip


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("foveated")
    build_foveated_parts(SPEC, corpus_lines(), root / "parts")
    write_shape_videos(root / "data", "train", 20, seed=0, image_size=32, frames=3)
    write_shape_videos(root / "data", "val", 10, seed=0, image_size=32, frames=3)
    return root


def model_of(parts: Path, **settings):
    return from_parts(parts / "parts" / "vision", parts / "parts" / "language", settings)


def a_batch(parts: Path, model_parts, replicate: int = 1) -> dict[str, torch.Tensor]:
    """Video, image and text samples of the val split in one batch (frames padded per sample)."""
    _, tokenizer, processor = model_parts
    val = read_samples(parts / "data" / "val.jsonl")
    picks = [next(i for i, s in enumerate(val) if s.kind == kind) for kind in ("video", "image", "text")]
    batches = FrameBatches(val, tokenizer, FrameStore(processor, replicate), 64, torch.device("cpu"))
    return batches(picks, loss="answer_only")


def trainer(parts: Path, settings: FoveatedSettings, architecture: str = "foveated") -> FoveatedTrainer:
    model, tokenizer, processor = model_of(parts, architecture=architecture)
    train, val = read_samples(parts / "data" / "train.jsonl"), read_samples(parts / "data" / "val.jsonl")
    return FoveatedTrainer(model, tokenizer, processor, train, val, settings, {"test": 1}, torch.device("cpu"))


def record_lm_inputs(model) -> list[torch.Size]:
    shapes: list[torch.Size] = []
    model.language.model.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(kwargs["inputs_embeds"].shape), with_kwargs=True
    )
    return shapes


@pytest.mark.parametrize("mode", ["coarse_only", "coarse_fine", "autoregressive"])
def test_exactly_one_visual_token_per_frame_reaches_the_lm(parts, mode):
    model, tokenizer, processor = model_of(parts)
    batch = a_batch(parts, (model, tokenizer, processor))
    frames, text = batch["frame_mask"].shape[1], batch["input_ids"].shape[1]
    shapes = record_lm_inputs(model)
    with torch.no_grad():
        model(**batch, mode=mode)
    lengths = {s[1] for s in shapes}
    if mode == "autoregressive":  # one frame per step, then the text on the cache
        assert [s[1] for s in shapes] == [1] * frames + [text]
    elif mode == "coarse_fine":  # coarse frames alone, then fine frames + text, coarse frames + text
        assert [s[1] for s in shapes] == [frames, frames + text, frames + text]
    else:
        assert lengths == {frames + text}


def test_the_multi_token_baseline_sends_grid_squared_tokens_per_frame(parts):
    model, tokenizer, processor = model_of(parts, architecture="multi_token", grid=2)
    batch = a_batch(parts, (model, tokenizer, processor))
    shapes = record_lm_inputs(model)
    with torch.no_grad():
        model(**batch)
    assert [s[1] for s in shapes] == [4 * batch["frame_mask"].shape[1] + batch["input_ids"].shape[1]]


def test_coarse_only_is_the_lm_on_the_static_query_tokens(parts):
    model, tokenizer, processor = model_of(parts)
    batch = a_batch(parts, (model, tokenizer, processor))
    model.eval()
    with torch.no_grad():
        out = model(**batch, mode="coarse_only")
        real = batch["frame_mask"]
        cache = encode_frames(model.vision, batch["pixel_values"][real])
        features, _ = query_frames(model.vision, cache, model.q_static.expand(int(real.sum()), -1))
        tokens = torch.zeros(*real.shape, 16)
        tokens[real] = model.connector(features) * model.visual_scale
        embeds = torch.cat([tokens, model.language.get_input_embeddings()(batch["input_ids"])], dim=1)
        mask = torch.cat([real.long(), batch["attention_mask"]], dim=1)
        logits = model.language(inputs_embeds=embeds, attention_mask=mask).logits[:, real.shape[1] :]
        expected = text_loss(logits, batch["input_ids"], batch["loss_mask"])[0]
    torch.testing.assert_close(out.loss, expected)
    assert out.loss_fine is None and "fine" not in out.attention


def test_with_one_frame_per_sample_autoregressive_equals_coarse_fine(parts):
    """Frame 0 is looked at with the learned initial query in both; only later frames differ."""
    model, tokenizer, processor = model_of(parts)
    batch = a_batch(parts, (model, tokenizer, processor))
    single = {**batch, "pixel_values": batch["pixel_values"][:, :1], "frame_mask": batch["frame_mask"][:, :1]}
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            model(**single, mode="autoregressive").loss, model(**single, mode="coarse_fine").loss
        )
        several = model(**batch, mode="autoregressive").loss, model(**batch, mode="coarse_fine").loss
    assert not torch.allclose(*several)  # the video's later frames are queried differently


def test_deep_and_shallow_queries_differ_only_where_they_should(parts):
    model, _, _ = model_of(parts)
    model.eval()
    pixels = torch.randn(3, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    queries = torch.randn(3, 16)
    with torch.no_grad():
        cache = encode_frames(model.vision, pixels)
        deep, _ = model.look(cache, queries)
        model.deep_query = False
        shallow, _ = model.look(cache, queries)
        # on the same cache the shallow query never uses layer 0; the deep one does
        model.vision.encoder.layer[0].attention.q_proj.weight.mul_(3.0)
        model.vision.encoder.layer[0].mlp.fc1.weight.mul_(-1.0)
        torch.testing.assert_close(model.look(cache, queries)[0], shallow)
        model.deep_query = True
        assert not torch.allclose(model.look(cache, queries)[0], deep)
        # with a single encoder layer the two are one and the same
        model.vision.encoder.layer = model.vision.encoder.layer[-1:]
        one_layer = encode_frames(model.vision, pixels)
        cache_one = type(cache)(one_layer.keys, one_layer.values, one_layer.patches)
        model.deep_query = True
        deep_one = model.look(cache_one, queries)[0]
        model.deep_query = False
        torch.testing.assert_close(model.look(cache_one, queries)[0], deep_one)
    assert not torch.allclose(deep, shallow)


def test_save_and_load_give_the_same_model(parts, tmp_path):
    model, tokenizer, processor = model_of(parts, deep_query=False)
    batch = a_batch(parts, (model, tokenizer, processor))
    model.save_pretrained(tmp_path / "saved", tokenizer, processor)
    loaded, _, _ = load_frame_lm(tmp_path / "saved")
    assert isinstance(loaded, FoveatedVLM) and loaded.deep_query is False
    model.eval(), loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).loss, loaded(**batch).loss)
    assert (tmp_path / "saved" / "model.safetensors").is_file()


def parameters_by_group(model) -> dict[str, dict[str, torch.Tensor]]:
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for name, param in model.named_parameters():
        groups.setdefault(model.group_of(name), {})[name] = param.detach().clone()
    return groups


@pytest.mark.parametrize("frozen", [("vision", "language"), ("language",), ()])
def test_frozen_groups_get_no_updates(parts, frozen):
    run = trainer(parts, replace(SETTINGS, freeze=frozen, budget=4))
    before = parameters_by_group(run.model)
    run.train_step()
    after = parameters_by_group(run.model)
    assert [g["name"] for g in run.optimizer.param_groups] == [
        g for g in ("connector", "vision", "language") if g not in frozen
    ]
    for group, params in before.items():
        changed = any(not torch.equal(params[n], after[group][n]) for n in params)
        assert changed == (group not in frozen), group


def test_each_group_learns_at_its_own_rate(parts):
    """Adam's first step moves every parameter with a gradient by exactly its group's lr (no
    weight decay, no warmup): the largest change in each group is that group's lr."""
    settings = replace(
        SETTINGS, weight_decay=0.0, warmup_steps=0, lr_connector=1e-2, lr_vision=1e-4, lr_language=1e-3, budget=4
    )
    run = trainer(parts, settings)
    before = parameters_by_group(run.model)
    row = run.train_step()
    after = parameters_by_group(run.model)
    for group, lr in settings.lrs.items():
        step = max(float((after[group][n] - before[group][n]).abs().max()) for n in before[group])
        assert step == pytest.approx(lr, rel=1e-3), group
        assert row[f"lr/{group}"] == lr
    assert {g["name"]: g["lr"] for g in optimizer_groups(run.model, settings)} == settings.lrs


def test_the_step_log_has_what_the_seed_asks_for(parts):
    run = trainer(parts, replace(SETTINGS, budget=4))
    row = run.train_step()
    for key in (
        "loss",
        "loss_fine",
        "loss_coarse",
        "loss_ratio",
        "grad_norm",
        "attention_entropy",
        "lr/connector",
        "lr/vision",
        "lr/language",
    ):
        assert row[key] is not None, key
    assert row["loss_ratio"] == pytest.approx(row["loss_fine"] / row["loss_coarse"])
    baseline = trainer(parts, replace(SETTINGS, budget=4), architecture="multi_token").train_step()
    assert baseline["loss_fine"] is None and baseline["attention_entropy"] is None


def test_a_killed_run_resumes_to_the_same_curve(parts, tmp_path):
    settings = replace(SETTINGS, budget=12)  # 3 steps, checkpoint and evaluation after each
    whole = trainer(parts, settings)
    whole.run(tmp_path / "whole")
    interrupted = trainer(parts, settings)
    original = interrupted.train_step

    def dies_at_step_3():
        if interrupted.step == 2:
            raise KeyboardInterrupt
        return original()

    interrupted.train_step = dies_at_step_3
    with pytest.raises(KeyboardInterrupt):
        interrupted.run(tmp_path / "resumed")
    resumed = trainer(parts, settings)
    resumed.run(tmp_path / "resumed")
    assert resumed.step == 3

    def rows(run: str, name: str) -> list[dict]:
        return [json.loads(line) for line in (tmp_path / run / name).read_text().splitlines()]

    for name in ("log.jsonl", "evals.jsonl"):
        a, b = rows("whole", name), rows("resumed", name)
        assert [r["step"] for r in a] == [r["step"] for r in b]
        for ra, rb in zip(a, b, strict=True):
            for key in ("loss", "val_loss", "val_accuracy"):
                if key in ra:
                    assert ra[key] == pytest.approx(rb[key], rel=1e-5), (name, key)
    assert sorted(p.name for p in (tmp_path / "resumed" / "attention").iterdir()) == sorted(
        p.name for p in (tmp_path / "whole" / "attention").iterdir()
    )


@pytest.mark.parametrize("architecture", ["foveated", "multi_token"])
def test_a_batch_of_text_samples_is_the_lm_on_the_text(parts, architecture):
    model, tokenizer, processor = model_of(parts, architecture=architecture)
    batch = a_batch(parts, (model, tokenizer, processor))
    text = {k: v[2:] for k, v in batch.items()}  # the text sample alone: no frames at all
    text = {**text, "pixel_values": text["pixel_values"][:, :0], "frame_mask": text["frame_mask"][:, :0]}
    model.eval()
    with torch.no_grad():
        logits = model.language(input_ids=text["input_ids"], attention_mask=text["attention_mask"]).logits
        expected = text_loss(logits, text["input_ids"], text["loss_mask"])[0]
        modes = ["coarse_only", "coarse_fine", "autoregressive"] if architecture == "foveated" else ["multi_token"]
        for mode in modes:
            torch.testing.assert_close(model(**text, mode=mode).loss, expected)
        if architecture == "foveated":  # both passes are the text loss: fine + lambda coarse
            torch.testing.assert_close(model(**text, mode="coarse_fine", lambda_coarse=0.5).loss, 1.5 * expected)


def test_blanking_the_frames_changes_only_the_samples_that_have_frames(parts):
    model, tokenizer, processor = model_of(parts)
    val = read_samples(parts / "data" / "val.jsonl")
    batches = FrameBatches(val, tokenizer, FrameStore(processor), 64, torch.device("cpu"))
    by_kind = {kind: [i for i, s in enumerate(val) if s.kind == kind] for kind in ("video", "text")}
    for kind, indices in by_kind.items():
        seen = evaluate(model, batches, indices, "coarse_fine", 8)
        blank = evaluate(model, batches, indices, "coarse_fine", 8, blank=True)
        assert (seen["val_loss"] == pytest.approx(blank["val_loss"])) == (kind == "text"), kind


def test_the_evaluation_measures_the_query_attention_on_the_moving_shape(parts, monkeypatch):
    monkeypatch.setattr(motion, "PATCH_COVER", 0.05)  # a 2x2 grid: the shape fills a quarter of a patch at most
    model, tokenizer, processor = model_of(parts)
    val = read_samples(parts / "data" / "val.jsonl")
    batches = FrameBatches(val, tokenizer, FrameStore(processor), 64, torch.device("cpu"))
    videos = [i for i, s in enumerate(val) if s.kind == "video"]
    texts = [i for i, s in enumerate(val) if s.kind == "text"]
    for mode in ("coarse_only", "coarse_fine"):
        seen = evaluate(model, batches, videos, mode, 8)
        assert 0 < seen["mover_share"] < 1 and 0 < seen["mover_attention"] < 1, mode
        assert seen["mover_lift"] == pytest.approx(seen["mover_attention"] / seen["mover_share"])
    blank, text = (
        evaluate(model, batches, videos, "coarse_fine", 8, blank=True),
        evaluate(model, batches, texts, "coarse_fine", 8),
    )
    for scores in (blank, text):
        assert scores["mover_attention"] is None and scores["mover_lift"] is None
    baseline, tokenizer, processor = model_of(parts, architecture="multi_token")
    batches = FrameBatches(val, tokenizer, FrameStore(processor), 64, torch.device("cpu"))
    assert evaluate(baseline, batches, videos, "multi_token", 8)["mover_lift"] is None
