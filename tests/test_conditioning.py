"""VL conditioning (seed 003) on the tiny Z-Image pipeline and Qwen3-VL: extraction, recipes,
generation with metadata and resume, the dimension analysis and the figures."""

from __future__ import annotations

import json
import logging

import polars as pl
import pytest
import torch

from vlmflow.conditioning.dimensions import dimension_tables
from vlmflow.conditioning.extract import reference_hidden_states, select_tokens, vl_forward
from vlmflow.conditioning.generate import load_encoders, resume_key, run_experiment
from vlmflow.conditioning.plots import comparison_grid, plot_dimensions
from vlmflow.conditioning.recipe import ConditioningSpec, VLSource, condition
from vlmflow.conditioning.report import dimension_rows, image_rows
from vlmflow.core.settings import ImageSettings
from vlmflow.synth.captioned_scenes import REFERENCE_SCENE, draw_scene
from vlmflow.zoo.conditioning import build_conditioning_models

SPEC = {
    "seed": 0,
    "vocab_size": 300,
    "image_size": 64,  # 4x4 patches of 16 px, merged 2x2: 4 visual tokens
    "text": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
    },
    "vision": {
        "depth": 1,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_heads": 2,
        "num_position_embeddings": 16,
        "deepstack_visual_indexes": [0],
    },
    "transformer": {
        "dim": 32,
        "n_layers": 1,
        "n_refiner_layers": 1,
        "n_heads": 1,
        "n_kv_heads": 1,
        "axes_dims": [8, 12, 12],
        "axes_lens": [128, 32, 32],
    },
    "vae": {"block_out_channels": [8, 16], "layers_per_block": 1, "norm_num_groups": 4},
}
CORPUS = [
    "a red house with a yellow sun",
    "a blue door and a white window",
    "describe what you see",
] * 20
PROMPT = "a red house with a yellow sun"
LOG = logging.getLogger("test")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("zimage")
    build_conditioning_models(SPEC, CORPUS, root / "model")
    image = root / "house.png"
    draw_scene(REFERENCE_SCENE, 64).save(image)
    return root


@pytest.fixture(scope="module")
def loaded(built):
    return load_encoders(built / "model" / "pipeline", built / "model" / "vlm", built / "house.png", "cpu")


def test_token_selection_picks_exactly_the_processors_image_and_text_positions(loaded):
    _, encoders = loaded
    hidden_states, token_types = vl_forward(encoders.vlm, encoders.processor, PROMPT, encoders.image)
    prompt = encoders.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    inputs = encoders.processor(
        text=[prompt], images=[encoders.image], return_tensors="pt", return_mm_token_type_ids=True
    )
    types = torch.as_tensor(inputs["mm_token_type_ids"][0])
    assert torch.equal(token_types, types)
    image_positions = inputs["input_ids"][0] == encoders.vlm.config.image_token_id
    assert torch.equal(image_positions, types == 1) and int(image_positions.sum()) == 4
    layer = hidden_states[-2]
    assert torch.equal(select_tokens(layer, token_types, "image_only"), layer[image_positions])
    assert torch.equal(select_tokens(layer, token_types, "text_only"), layer[~image_positions])
    assert torch.equal(select_tokens(layer, token_types, "full"), layer)
    with pytest.raises(ValueError, match="keeps no tokens"):
        select_tokens(layer, torch.zeros_like(token_types), "image_only")


def test_reference_encoding_is_z_images_unpadded_hidden_states(loaded):
    pipeline, encoders = loaded
    ours = reference_hidden_states(encoders.text_encoder, encoders.tokenizer, PROMPT)
    theirs = pipeline.encode_prompt(PROMPT, do_classifier_free_guidance=False)[0][0]
    assert ours.shape == theirs.shape and ours.shape[0] < 40  # padded to 512, the padding dropped
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_the_vlm_reads_a_text_only_prompt_like_the_reference_encoder(loaded):
    """The tiny VLM's language model starts as the text encoder, so without the image its states
    are the reference's; with the image they are not (the text attends to the image tokens)."""
    _, encoders = loaded
    reference = encoders.reference(PROMPT, -2)
    alone = encoders.vl(VLSource(token_selection="full", use_image=False), PROMPT)
    assert torch.allclose(alone, reference, atol=1e-5)
    with_image = encoders.vl(VLSource(token_selection="text_only"), PROMPT)
    assert with_image.shape[0] == reference.shape[0] + 2  # the vision start / end markers
    assert not torch.allclose(with_image[-4:], reference[-4:], atol=1e-3)


def test_layers_are_read_from_one_pass_and_out_of_range_layers_are_named(loaded):
    _, encoders = loaded
    hidden_states, _ = encoders.forward(PROMPT, True)
    assert len(hidden_states) == 4  # embeddings + 3 layers
    assert torch.equal(encoders.vl(VLSource(hidden_layer=-4), PROMPT), hidden_states[0])
    with pytest.raises(ValueError, match=r"hidden layer -5 out of range: this model has 4 hidden states \(-4..3\)"):
        encoders.vl(VLSource(hidden_layer=-5), PROMPT)


def test_recipes_match_std_blend_and_mix(loaded):
    _, encoders = loaded
    reference = encoders.reference(PROMPT, -2)
    embeds, stats = condition(encoders, PROMPT, ConditioningSpec(alpha=0.0))
    assert (
        torch.equal(embeds, reference)
        and stats["vl_shape"] is None
        and stats["cosine_to_reference"] == pytest.approx(1)
    )
    _, stats = condition(encoders, PROMPT, ConditioningSpec(source=VLSource(token_selection="text_only")))
    assert stats["vl_std"] == pytest.approx(stats["reference_std"], rel=1e-4)
    _, stats = condition(encoders, PROMPT, ConditioningSpec(target_std=70.0, normalization="per_dim"))
    assert stats["vl_std"] == pytest.approx(70.0, rel=1e-2)
    embeds, stats = condition(encoders, PROMPT, ConditioningSpec(alpha=0.3))
    assert embeds.shape[0] == min(stats["vl_shape"][0], reference.shape[0])
    image_text = ConditioningSpec.from_config(
        {
            "token_selection": "image_only",
            "vl_text": "",
            "mix_with": {"token_selection": "text_only", "vl_text": "{prompt}"},
            "mix_weight": 0.3,
        }
    )
    assert image_text.mix_with == VLSource(token_selection="text_only", vl_text="{prompt}", use_image=True)
    embeds, stats = condition(encoders, PROMPT, image_text)
    assert stats["vl_shape"] == [4, 32]  # the 4 image tokens, mixed with the first 4 text positions


def test_a_recipe_the_model_cannot_serve_is_named(loaded, tmp_path):
    pipeline, encoders = loaded
    outputs = {"too_deep": ConditioningSpec(source=VLSource(hidden_layer=-9))}
    with pytest.raises(ValueError, match=r"output 'too_deep': hidden layer -9 out of range"):
        run_experiment(
            pipeline, encoders, PROMPT, outputs, ImageSettings(height=32, width=32, steps=1), tmp_path, {}, LOG
        )


def test_recipe_settings_are_checked():
    with pytest.raises(ValueError, match="normalization must be one of"):
        ConditioningSpec(normalization="layer")
    with pytest.raises(ValueError, match="alpha must be in"):
        ConditioningSpec(alpha=1.5)
    with pytest.raises(ValueError, match="token_selection must be one of"):
        VLSource(token_selection="images")


def test_experiment_writes_images_and_metadata_and_resumes(built, loaded, tmp_path):
    pipeline, encoders = loaded
    outputs = {
        "pure_qwen3_4b": ConditioningSpec(alpha=0.0),
        "pure_vl_text_tokens": ConditioningSpec(source=VLSource(token_selection="text_only")),
        "image_tokens": ConditioningSpec(
            source=VLSource(token_selection="image_only"), outliers="zero", outlier_ratio=1.5
        ),
    }
    settings = ImageSettings(height=32, width=32, steps=2)
    models = resume_key(built / "model" / "pipeline", built / "model" / "vlm", built / "house.png")
    metadata = run_experiment(pipeline, encoders, PROMPT, outputs, settings, tmp_path, models, LOG)
    by_name = {r["name"]: r for r in metadata["results"]}
    assert list(by_name) == list(outputs)
    same_noise_same_conditioning = by_name["pure_qwen3_4b"]["pixel_distance_to_reference"]
    assert same_noise_same_conditioning == 0.0
    assert by_name["pure_vl_text_tokens"]["pixel_distance_to_reference"] > 0.0
    image_entry = by_name["image_tokens"]
    assert image_entry["token_selection"] == "image_only" and image_entry["hidden_layer"] == -2
    assert image_entry["vl_shape"] == [4, 32] and image_entry["outlier_dims"] > 0
    assert json.loads((tmp_path / "metadata.json").read_text()) == metadata
    assert (tmp_path / "reference.png").stat().st_size > 0

    def stamps() -> dict[str, int]:
        return {name: (tmp_path / f"{name}.png").stat().st_mtime_ns for name in outputs}

    before = stamps()
    outputs["image_tokens"] = ConditioningSpec(source=VLSource(token_selection="image_only"))
    again = run_experiment(pipeline, encoders, PROMPT, outputs, settings, tmp_path, models, LOG)
    after = stamps()
    assert after["pure_qwen3_4b"] == before["pure_qwen3_4b"]  # kept
    assert after["image_tokens"] != before["image_tokens"]  # another recipe: made again
    assert again["results"][0] == metadata["results"][0]
    rebuilt = {**models, "vlm": {**models["vlm"], "written_ns": 0}}
    run_experiment(pipeline, encoders, PROMPT, outputs, settings, tmp_path, rebuilt, LOG)
    assert all(stamp != after[name] for name, stamp in stamps().items())  # another model: all made again

    comparison_grid(again, tmp_path, tmp_path / "comparison_grid.png", "test")
    assert (tmp_path / "comparison_grid.png").stat().st_size > 0
    metrics = {r["metric"] for r in image_rows("test", "tiny", again, "metadata.json")}
    assert {"pure_vl_text_tokens/cosine_to_reference", "pure_qwen3_4b/pixel_distance_to_reference"} <= metrics
    assert "pure_qwen3_4b/vl_std" not in metrics  # no VL side: no row


def test_dimension_tables_cover_every_layer_and_token_type(loaded, tmp_path):
    _, encoders = loaded
    layers, outliers = dimension_tables(encoders, [PROMPT, "a blue door"], outlier_ratio=1.5, top_k=3)
    assert layers.height == 4 * 3 and layers["layer"].unique().sort().to_list() == [-4, -3, -2, -1]
    image_rows_ = layers.filter(pl.col("token_type") == "image_only")
    assert image_rows_["tokens"].unique().to_list() == [8]  # 4 image tokens per prompt
    assert outliers.height == 4 * 3 * 3
    top = outliers.filter((pl.col("layer") == -2) & (pl.col("token_type") == "full"))
    assert top["ratio"].to_list() == sorted(top["ratio"].to_list(), reverse=True)
    plot_dimensions(layers, outliers, tmp_path / "dimensions.png", "test")
    assert (tmp_path / "dimensions.png").stat().st_size > 0
    assert len(dimension_rows("tiny", layers, "layers.csv")) == 4 * 3 * 4


def test_a_vlm_of_another_width_is_refused(built, tmp_path):
    other = {**SPEC, "text": {**SPEC["text"], "hidden_size": 48, "head_dim": 24}}
    build_conditioning_models(other, CORPUS, tmp_path / "other")
    with pytest.raises(ValueError, match="hidden size 48, but the pipeline's text encoder has 32"):
        load_encoders(built / "model" / "pipeline", tmp_path / "other" / "vlm", None, "cpu")


def test_missing_pipeline_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a diffusers pipeline"):
        load_encoders(tmp_path, tmp_path, None, "cpu")
