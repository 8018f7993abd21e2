"""Pretraining the VL-conditioning study's tiny Z-Image and Qwen3-VL: the captioned scenes and the
caption-following measure, each part's objective (flow matching as the pipeline samples), resume,
the first steps, packaging, and the caption-following study with its resume."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_conditioning import SPEC

import vlmflow.conditioning.following as following_module
from vlmflow.conditioning.caption_following import (
    caption_colour,
    caption_following,
    caption_side,
    dominant_colour,
    following_rates,
)
from vlmflow.conditioning.following import read_captions, run_following
from vlmflow.conditioning.generate import load_encoders, resume_key
from vlmflow.conditioning.package import evaluate_shipped, export, weight_digests
from vlmflow.conditioning.plots import plot_following
from vlmflow.conditioning.pretrain import (
    caption_batch,
    encode_latents,
    first_steps,
    flow_matching_loss,
    load_parts,
    pipeline_of,
    pretrain_part,
    read_scenes,
    save_part,
)
from vlmflow.conditioning.recipe import ConditioningSpec
from vlmflow.core.io import read_jsonl
from vlmflow.core.settings import ZIMAGE_PARTS, ImageSettings, ZImagePartSettings
from vlmflow.synth.captioned_scenes import REFERENCE_SCENE, captioned_scenes, draw_scene, write_captioned_scenes
from vlmflow.zoo.conditioning import build_conditioning_models
from vlmflow.zoo.provenance import state_digest

# The test build: test_conditioning's tiny parts with a three-level VAE (64 px -> 16x16 latents, as
# the shipped one).
BUILD = {**SPEC, "vae": {"block_out_channels": [8, 16, 16], "layers_per_block": 1, "norm_num_groups": 4}}
SETTINGS = ZImagePartSettings(steps=4, batch_size=4, warmup_steps=1, checkpoint_every=2)
LOG = logging.getLogger("test")


@pytest.fixture(scope="module")
def scenes_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    write_captioned_scenes(root / "train", 16, seed=1, split="train", size=64)
    write_captioned_scenes(root / "val", 4, seed=0, split="val", size=64)
    return root


@pytest.fixture(scope="module")
def random_build(tmp_path_factory, scenes_dir):
    root = tmp_path_factory.mktemp("build")
    corpus = [row["text"] for row in read_jsonl(scenes_dir / "train" / "metadata.jsonl")] * 4
    build_conditioning_models(BUILD, corpus, root / "random")
    return root / "random"


def test_scenes_are_an_imagefolder_the_measure_reads_right(scenes_dir):
    rows = read_jsonl(scenes_dir / "train" / "metadata.jsonl")
    assert rows[0]["file_name"] == "000000.png" and rows == read_jsonl(scenes_dir / "train" / "metadata.jsonl")
    assert [r["text"] for r in rows] == [s["text"] for s in captioned_scenes(16, 1, "train")]  # seeded
    for scene in captioned_scenes(200, 0, "val"):  # the measure, on the true pictures, agrees with every caption
        measure = caption_following(draw_scene(scene, 64), scene["text"])
        assert measure["colour_follows_caption"] and measure["side_follows_caption"], scene["text"]
        assert measure["named_colour"] == scene["colour"]
    assert caption_colour("an orange square on the left with a red sun") == "orange"
    assert caption_side("an orange square on the left with a red sun") == "left"
    assert caption_side("a red house with a yellow sun") == "centre"
    assert dominant_colour(draw_scene(REFERENCE_SCENE, 128))[0] == "blue"


def test_a_caption_missing_from_the_imagefolder_is_named(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "metadata.jsonl").write_text('{"file_name": "0.png", "text": "a red square"}\n{"file_name": "1.png"}\n')
    with pytest.raises(ValueError, match=r"bad/metadata.jsonl: row 2"):
        read_captions(folder)
    with pytest.raises(ValueError, match=r"bad/metadata.jsonl: row 2 needs a file_name and a text"):
        read_scenes(folder)


def test_flow_matching_target_is_what_the_pipeline_samples_with(random_build, scenes_dir):
    """An oracle transformer that returns the loss's target for one known latent (x0 - noise,
    recovered from x_t and the timestep the pipeline passes) scores zero loss, and the real
    ZImagePipeline, sampling with it from any noise, lands on that latent's picture."""
    parts = load_parts(random_build, {})
    pipeline = pipeline_of(parts)
    target = encode_latents(parts.vae, read_scenes(scenes_dir / "val").pixels[:1])  # (1, 16, 16, 16)

    def oracle(frames, t, conditioning, return_dict=False, **kwargs):
        sigma = (1 - t).view(-1, 1, 1, 1, 1)  # the pipeline passes 1 - sigma
        x = torch.stack(frames)
        noise = (x - (1 - sigma) * target.unsqueeze(2)) / sigma.clamp_min(1e-6)
        return (list((target.unsqueeze(2) - noise).unbind(0)),)

    parts.transformer.forward = oracle
    conditioning = [torch.zeros(3, parts.text_encoder.config.hidden_size)]
    assert flow_matching_loss(parts.transformer, target, conditioning).item() < 1e-8
    sampled = pipeline(prompt_embeds=conditioning, height=64, width=64, num_inference_steps=4, output_type="latent",
                       guidance_scale=0.0, generator=torch.Generator().manual_seed(3)).images  # fmt: skip
    torch.testing.assert_close(sampled, target, atol=1e-4, rtol=1e-4)


def test_captioning_labels_are_the_caption_only(random_build, scenes_dir):
    parts = load_parts(random_build, {}, with_vlm=True)
    scenes = read_scenes(scenes_dir / "train")
    batch = caption_batch(parts.processor, [scenes.image(0), scenes.image(1)], scenes.captions[:2])
    for row, caption in enumerate(scenes.captions[:2]):
        labelled = batch["labels"][row][batch["labels"][row] != -100]
        assert parts.processor.tokenizer.decode(labelled) == caption + "<|im_end|>\n"


@pytest.mark.parametrize("part", ZIMAGE_PARTS)
def test_a_resumed_part_equals_an_uninterrupted_one(part, random_build, scenes_dir, tmp_path):
    scenes = read_scenes(scenes_dir / "train")
    whole = pretrain_part(part, random_build, {}, scenes, SETTINGS, tmp_path / "a.state", tmp_path / "a.jsonl")
    pretrain_part(part, random_build, {}, scenes, SETTINGS, tmp_path / "b.state", tmp_path / "b.jsonl", stop_at=2)
    resumed = pretrain_part(part, random_build, {}, scenes, SETTINGS, tmp_path / "b.state", tmp_path / "b.jsonl")
    assert state_digest(getattr(whole, part)) == state_digest(getattr(resumed, part))
    assert read_jsonl(tmp_path / "a.jsonl") == read_jsonl(tmp_path / "b.jsonl")
    assert [r["step"] for r in read_jsonl(tmp_path / "a.jsonl")] == [1, 2, 3, 4]


def test_the_vlm_trains_its_tower_on_the_trained_encoder_frozen_or_at_language_lr(random_build, scenes_dir, tmp_path):
    scenes = read_scenes(scenes_dir / "train")
    encoder = pretrain_part("text_encoder", random_build, {}, scenes, SETTINGS, tmp_path / "t", tmp_path / "t.jsonl")
    save_part("text_encoder", encoder, scenes, tmp_path / "text_encoder")
    before = load_parts(random_build, {}, with_vlm=True).vlm
    parts = pretrain_part(
        "vlm",
        random_build,
        {"text_encoder": tmp_path / "text_encoder"},
        scenes,
        SETTINGS,
        tmp_path / "v",
        tmp_path / "v.jsonl",
    )
    language = parts.vlm.model.language_model.state_dict()
    for name, tensor in encoder.text_encoder.model.state_dict().items():
        assert torch.equal(language[name], tensor), name  # the encoder's weights, untouched
    changed = [
        n
        for n, p in parts.vlm.model.visual.named_parameters()
        if not torch.equal(p, before.get_parameter(f"model.visual.{n}"))
    ]
    assert changed  # the tower learned
    language_too = pretrain_part(
        "vlm",
        random_build,
        {"text_encoder": tmp_path / "text_encoder"},
        scenes,
        replace(SETTINGS, language_lr=1e-3),
        tmp_path / "w",
        tmp_path / "w.jsonl",
    )
    moved = language_too.vlm.model.language_model.state_dict()
    assert any(not torch.equal(moved[name], tensor) for name, tensor in language.items())  # language_lr trains it


def test_the_saved_vae_gives_centred_unit_latents(random_build, scenes_dir, tmp_path):
    scenes = read_scenes(scenes_dir / "train")
    parts = pretrain_part("vae", random_build, {}, scenes, SETTINGS, tmp_path / "s", tmp_path / "l.jsonl")
    save_part("vae", parts, scenes, tmp_path / "vae")
    latents = encode_latents(load_parts(random_build, {"vae": tmp_path / "vae"}).vae, scenes.pixels)
    assert abs(latents.mean().item()) < 1e-4 and abs(latents.std().item() - 1) < 1e-4


def test_first_steps_repeat_and_match_the_run(random_build, scenes_dir, tmp_path):
    scenes = read_scenes(scenes_dir / "train")
    settings = dict.fromkeys(ZIMAGE_PARTS, SETTINGS)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    once = first_steps(random_build, scenes, settings, 2, tmp_path / "a")
    again = first_steps(random_build, scenes, settings, 2, tmp_path / "b")
    assert once == again and list(once) == list(ZIMAGE_PARTS)
    run = pretrain_part(
        "text_encoder", random_build, {}, scenes, SETTINGS, tmp_path / "s", tmp_path / "r.jsonl", stop_at=2
    )
    assert once["text_encoder"][1]["weights_sha256"] == state_digest(run.text_encoder)
    assert once["text_encoder"][1]["loss"] == read_jsonl(tmp_path / "r.jsonl")[-1]["loss"]
    assert once["vae"][0]["weights_sha256"] != once["vae"][1]["weights_sha256"]


def test_the_package_is_the_trained_parts_rounded_and_evaluated_as_shipped(random_build, scenes_dir, tmp_path):
    scenes = read_scenes(scenes_dir / "train")
    trained = {}
    for part in ZIMAGE_PARTS:
        parts = pretrain_part(
            part, random_build, {}, scenes, SETTINGS, tmp_path / f"{part}.s", tmp_path / f"{part}.jsonl"
        )
        save_part(part, parts, scenes, tmp_path / part)
        trained[part] = tmp_path / part
    export(random_build, trained, tmp_path / "zoo", "float16")
    transformer = load_parts(random_build, {"transformer": trained["transformer"]}).transformer
    packaged = load_file(tmp_path / "zoo" / "pipeline" / "transformer" / "diffusion_pytorch_model.safetensors")
    assert packaged.keys() == transformer.state_dict().keys()
    for name, tensor in transformer.state_dict().items():
        assert packaged[name].dtype == torch.float16 and torch.equal(packaged[name], tensor.half()), name
    vlm = load_file(tmp_path / "zoo" / "vlm" / "model.safetensors")
    language = load_parts(random_build, {"vlm": trained["vlm"]}, with_vlm=True).vlm.state_dict()
    assert all(torch.equal(vlm[name], language[name].half()) for name in vlm)
    assert set(weight_digests(tmp_path / "zoo")) == set(ZIMAGE_PARTS)  # every part's weights file is where it is named
    evaluation = evaluate_shipped(tmp_path / "zoo", read_scenes(scenes_dir / "val"), {"steps": 2})
    assert evaluation["caption_following"]["n"] == 4 and evaluation["captioning"]["n"] == 4


def test_caption_following_study_resumes_and_rates_each_recipe(random_build, scenes_dir, tmp_path, monkeypatch):
    image = tmp_path / "house.png"
    draw_scene(REFERENCE_SCENE, 64).save(image)
    pipeline, encoders = load_encoders(random_build / "pipeline", random_build / "vlm", image, "cpu")
    recipes = {
        "reference": ConditioningSpec(alpha=0.0),
        "text_tokens": ConditioningSpec.from_config({"token_selection": "text_only"}),
    }
    captions = read_captions(scenes_dir / "val")
    settings = ImageSettings(height=32, width=32, steps=2)
    models = resume_key(random_build / "pipeline", random_build / "vlm", image)
    whole = run_following(
        pipeline, encoders, captions, recipes, settings, tmp_path / "a" / "pictures.jsonl", models, LOG
    )

    real, calls = following_module.generate, []

    def dies_on_the_fifth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(following_module, "generate", dies_on_the_fifth)
    out = tmp_path / "b" / "pictures.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run_following(pipeline, encoders, captions, recipes, settings, out, models, LOG)
    assert not out.exists() and len(read_jsonl(Path(str(out) + ".partial"))) == 4
    monkeypatch.setattr(following_module, "generate", real)
    resumed = run_following(pipeline, encoders, captions, recipes, settings, out, models, LOG)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "generation_time"} for r in rows]  # noqa: E731
    assert strip(whole) == strip(resumed) and len(resumed) == 8
    rates = following_rates(resumed, list(recipes))
    assert rates["recipe"].to_list() == ["reference", "text_tokens"] and rates["n"].to_list() == [4, 4]
    reference = [r for r in resumed if r["recipe"] == "reference"]
    assert rates["colour_follows_caption"][0] == pytest.approx(sum(r["colour_follows_caption"] for r in reference) / 4)
    plot_following(rates, resumed, out.parent, tmp_path / "following.png", captions_shown=2)
    assert (tmp_path / "following.png").stat().st_size > 0
