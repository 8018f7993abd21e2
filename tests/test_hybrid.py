"""Hybrid checkpoints: one model's vision tower on another's language model, checked and loadable."""

from __future__ import annotations

import pytest
import torch
from conftest import CORPUS, FAMILY_SPECS
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from vlmflow.zoo.build import build_checkpoint
from vlmflow.zoo.hybrid import HybridError, build_hybrid


def variant(family: str, seed: int, text: dict | None = None, vision: dict | None = None) -> dict:
    spec = FAMILY_SPECS[family]
    return {
        **spec,
        "seed": seed,
        "text": {**spec["text"], **(text or {})},
        "vision": {**spec["vision"], **(vision or {})},
    }


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("hybrid_zoo")
    specs = {
        "small": variant("qwen2_vl", 0),
        "large": variant("qwen2_vl", 1, text={"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 3}),
        "wide_tower": variant("qwen2_vl", 2, vision={"embed_dim": 32}),
        "llava_a": variant("llava", 3),
        "llava_b": variant("llava", 4, text={"hidden_size": 48, "intermediate_size": 96}),
        "internvl_a": variant("internvl", 5),
        "internvl_b": variant("internvl", 6, text={"hidden_size": 48, "intermediate_size": 96}),
    }
    for name, spec in specs.items():
        build_checkpoint(spec, CORPUS, root / name)
    return root


def weights(path):
    return dict(AutoModelForImageTextToText.from_pretrained(path).state_dict())


@pytest.mark.parametrize(
    ("vision", "language", "tower", "projector"),
    [
        ("small", "large", "model.visual.", "model.visual.merger."),
        ("llava_a", "llava_b", "model.vision_tower.", "model.multi_modal_projector."),
        ("internvl_a", "internvl_b", "model.vision_tower.", "model.multi_modal_projector."),
    ],
)
def test_graft_takes_the_tower_from_one_and_the_rest_from_the_other(zoo, tmp_path, vision, language, tower, projector):
    build_hybrid(zoo / vision, zoo / language, tmp_path / "hybrid")
    hybrid, a, b = weights(tmp_path / "hybrid"), weights(zoo / vision), weights(zoo / language)
    assert set(hybrid) == set(b)
    for name, tensor in hybrid.items():
        from_a = name.startswith(tower) and not name.startswith(projector)
        assert torch.equal(tensor, (a if from_a else b)[name]), name
    processor = AutoProcessor.from_pretrained(tmp_path / "hybrid")
    assert processor.tokenizer.get_vocab() == AutoProcessor.from_pretrained(zoo / language).tokenizer.get_vocab()
    assert (
        AutoConfig.from_pretrained(tmp_path / "hybrid").text_config.hidden_size
        == AutoConfig.from_pretrained(zoo / language).text_config.hidden_size
    )


def test_graft_with_projector_needs_matching_widths(zoo, tmp_path):
    with pytest.raises(HybridError, match="projector outputs 32-d features but .* is 48-d"):
        build_hybrid(zoo / "small", zoo / "large", tmp_path / "h", with_projector=True)
    assert not (tmp_path / "h").exists()
    build_hybrid(zoo / "large", zoo / "large", tmp_path / "same", with_projector=True)  # widths agree


def test_graft_checks_the_tower_width_and_the_family(zoo, tmp_path):
    with pytest.raises(HybridError, match="vision tower outputs 32-d features but .* projector takes 16-d"):
        build_hybrid(zoo / "wide_tower", zoo / "large", tmp_path / "h")
    with pytest.raises(HybridError, match="one family"):
        build_hybrid(zoo / "llava_a", zoo / "large", tmp_path / "h")
