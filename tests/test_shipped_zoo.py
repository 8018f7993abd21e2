"""The pretrained tiny zoo shipped in resources/zoo/: what the default starts from."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open
from transformers import AutoModelForImageTextToText, AutoProcessor

REPO = Path(__file__).resolve().parents[1]
ZOO = REPO / "resources" / "zoo"
SCALES = sorted(p for p in ZOO.glob("*/samples-*") if (p / "model.safetensors").is_file())
PARTS = sorted(p for p in ZOO.glob("*/samples-*") if (p / "vision").is_dir())  # the foveated parts
PIPELINES = sorted(p for p in ZOO.iterdir() if (p / "pipeline").is_dir())  # the conditioning pipelines
MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_TOTAL_BYTES = 40 * 1024 * 1024


def config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def shipped_last_scale(model: str) -> str:
    return max((p.name for p in (ZOO / model).glob("samples-*")), key=lambda name: int(name.removeprefix("samples-")))


def test_every_configured_model_is_shipped_at_every_scale():
    pretrain = config()["pretrain"]
    for name, spec in pretrain["models"].items():
        samples = spec.get("samples", pretrain["defaults"].get("samples"))
        expected = sorted({0, *spec.get("scales", []), samples})
        assert sorted(int(p.name.removeprefix("samples-")) for p in (ZOO / name).iterdir()) == expected, name
    for name, model in config()["models"].items():
        if model.get("path", "").startswith("resources/zoo/"):
            assert (REPO / model["path"] / "provenance.json").is_file(), name
    assert sorted(p.parent.name for p in PARTS) == sorted(pretrain.get("foveated", {}))
    assert sorted(p.name for p in PIPELINES) == sorted(pretrain.get("conditioning", {}))
    for name, model in config()["conditioning"]["models"].items():
        for part in ("pipeline", "vlm"):
            if model.get(part, "").startswith("resources/zoo/"):
                assert (REPO / model[part]).parent / "provenance.json" in [p / "provenance.json" for p in PIPELINES], (
                    name
                )
    for name, model in config()["foveated"]["models"].items():
        for part in ("vision", "language"):
            if model.get(part, "").startswith("resources/zoo/"):
                assert (REPO / model[part]).parent / "provenance.json" in [p / "provenance.json" for p in PARTS], name


@pytest.mark.parametrize("parts", PARTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_foveated_parts_are_half_precision_folders_their_provenance_describes(parts):
    from vlmflow.foveated.model import from_parts

    record = json.loads((parts / "provenance.json").read_text())
    assert record["model"] == parts.parent.name and f"samples-{record['samples']}" == parts.name
    own = config()["pretrain"]["foveated"][parts.parent.name]
    assert {key: record["config"][key] for key in own if key != "settings"} == {
        key: value for key, value in own.items() if key != "settings"
    }
    assert all(record["config"]["settings"][key] == value for key, value in own.get("settings", {}).items())
    assert record["config"]["settings"]["budget"] == own["samples"]
    # A run's new connector is initialised from the run's seed, as the pretraining's was from its
    # own: the same seed would start every run at the connector the parts were trained with.
    runs = config()["foveated"]
    seeds = {runs["defaults"].get("seed", 0), *(run.get("seed", 0) for run in runs["runs"].values())}
    assert record["config"]["settings"]["seed"] not in seeds
    for part in ("vision", "language"):
        weights = parts / part / "model.safetensors"
        assert record["weights_sha256"][part] == hashlib.sha256(weights.read_bytes()).hexdigest(), part
        with safe_open(weights, "pt") as handle:
            assert {handle.get_slice(name).get_dtype() for name in handle.keys()} <= {"F16", "I64"}, part
    assert len(record["commit"]) >= 40 and len(record["data_sha256"]) == 64
    assert [row["step"] for row in record["first_steps"]["steps"]] == [0, 1, 2]
    assert record["evaluations"][0]["samples"] == 0 and record["evaluations"][-1]["samples"] == record["samples"]
    model, tokenizer, processor = from_parts(parts / "vision", parts / "language", {"architecture": "foveated"})
    assert model.vision.config.model_type == "dinov2" and model.language.config.model_type == "llama"
    assert tokenizer.chat_template and processor.crop_size["height"] == model.vision.config.image_size


@pytest.mark.parametrize("folder", PIPELINES, ids=lambda p: p.name)
def test_the_conditioning_pipeline_is_what_its_provenance_describes_and_follows_captions(folder):
    from diffusers import ZImagePipeline

    from vlmflow.conditioning.extract import reference_hidden_states, vl_forward
    from vlmflow.conditioning.package import weight_digests

    record = json.loads((folder / "provenance.json").read_text())
    own = config()["pretrain"]["conditioning"][folder.name]  # the config it was trained with is today's
    assert all(record["config"][key] == value for key, value in own.items() if not isinstance(value, dict))
    assert record["config"]["build"] == own["build"]
    for part in ("text_encoder", "vae", "transformer", "vlm"):
        assert all(record["config"][part][key] == value for key, value in own[part].items()), part
        assert [row["step"] for row in record["first_steps"][part]] == [0, 2], part
    assert weight_digests(folder) == {part: trained["weights_sha256"] for part, trained in record["parts"].items()}
    assert len(record["commit"]) >= 40 and len(record["corpus_sha256"]) == 64
    for weights in folder.rglob("*.safetensors"):
        with safe_open(weights, "pt") as handle:
            assert {handle.get_slice(name).get_dtype() for name in handle.keys()} <= {"F16", "I64"}, weights
    # The must-show of the pretraining: pictures follow their captions.
    assert record["evaluation"]["caption_following"]["colour_follows_caption"] >= 0.8
    pipeline = ZImagePipeline.from_pretrained(folder / "pipeline", dtype=torch.float32)
    vlm = AutoModelForImageTextToText.from_pretrained(folder / "vlm", dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(folder / "vlm")
    assert vlm.config.get_text_config().hidden_size == pipeline.text_encoder.config.hidden_size
    prompt = "a red house with a yellow sun"  # without the picture, the VLM reads a prompt close to the encoder
    reference = reference_hidden_states(pipeline.text_encoder, pipeline.tokenizer, prompt)
    hidden_states, _ = vl_forward(vlm, processor, prompt, None)
    assert hidden_states[-2].shape[0] >= reference.shape[0]


def test_the_zoo_stays_small():
    files = [p for p in ZOO.rglob("*") if p.is_file()]
    assert all(p.stat().st_size < MAX_FILE_BYTES for p in files), [
        p for p in files if p.stat().st_size >= MAX_FILE_BYTES
    ]
    assert sum(p.stat().st_size for p in files) < MAX_TOTAL_BYTES


@pytest.mark.parametrize("scale", SCALES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_each_scale_is_a_half_precision_checkpoint_its_provenance_describes(scale):
    record = json.loads((scale / "provenance.json").read_text())
    weights = scale / "model.safetensors"
    assert record["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert record["model"] == scale.parent.name and f"samples-{record['samples']}" == scale.name
    own = config()["pretrain"]["models"][scale.parent.name]  # the config it was trained with is today's
    trained = {key: record["config"][key] for key in own}
    if own.get("init_from") in config()["pretrain"]["models"]:
        # Continued from that model's shipped last scale (the weights its export gives, as `make
        # pretrain` would), named by folder: the provenance names the model the folder came from.
        source = own["init_from"]
        assert trained["init_from"] in (source, f"resources/zoo/{source}/{shipped_last_scale(source)}")
        assert record["init_from"]["model"] == source
        trained["init_from"] = source
    assert trained == own
    assert len(record["commit"]) >= 40 and len(record["data_sha256"]) == 64
    assert record["first_steps"]["steps"][0]["step"] == 0 and record["evaluation"]
    with safe_open(weights, "pt") as handle:
        dtypes = {handle.get_slice(name).get_dtype() for name in handle.keys()}
    assert dtypes <= {"F16", "I64"}, dtypes
    model = AutoModelForImageTextToText.from_pretrained(scale, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(scale)
    assert model.config.model_type == "qwen2_vl" and processor.tokenizer.vocab_size > 0


@pytest.mark.parametrize("model", sorted({path.parent.name for path in [*SCALES, *PARTS]}))
def test_the_pretraining_figure_draws_from_the_shipped_provenance(model, tmp_path):
    from PIL import Image

    from vlmflow.pretrain.plots import plot_pretraining, samples_axis_label, scale_label

    folders = [path for path in [*SCALES, *PARTS] if path.parent.name == model]
    records = [json.loads((path / "provenance.json").read_text()) for path in folders]
    plot_pretraining(records, tmp_path / "pretraining.png")
    with Image.open(tmp_path / "pretraining.png") as figure:
        assert figure.width > figure.height > 200
    assert [scale_label(n) for n in (0, 8000, 160000, 1500)] == ["0", "8k", "160k", "1500"]
    continued = {"qwen2vl_guide_reading": "samples seen after qwen2vl_guide 480k"}  # a second stage's axis
    assert samples_axis_label(records[-1]) == continued.get(model, "samples seen")


@pytest.mark.parametrize("folder", PIPELINES, ids=lambda p: p.name)
def test_the_conditioning_pretraining_figure_draws_from_the_shipped_provenance(folder, tmp_path):
    from PIL import Image

    from vlmflow.conditioning.plots import plot_pipeline_pretraining

    plot_pipeline_pretraining(json.loads((folder / "provenance.json").read_text()), tmp_path / "pretraining.png")
    with Image.open(tmp_path / "pretraining.png") as figure:
        assert figure.width > 3 * figure.height > 600
