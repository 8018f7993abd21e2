"""Config validation errors name the key, the problem and the config file that set the key."""

from __future__ import annotations

from pathlib import Path

import yaml

from vlmflow.core.config_files import invalid_config_message, key_origin

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_key_origin_is_the_last_file_that_sets_the_key(tmp_path):
    default = write(tmp_path / "config.yaml", {"models": {"a": {"path": "x"}}, "datasets": {}})
    mine = write(tmp_path / "mine.yaml", {"models": {"b": {"path": "y"}}})
    assert key_origin(["models", "a"], [default, mine]) == default
    assert key_origin(["models", "b", "path"], [default, mine]) == mine
    assert key_origin(["models"], [default, mine]) == mine
    assert key_origin(["vqa"], [default, mine]) is None


def test_a_bad_key_names_its_place_and_file(tmp_path):
    datasets = {"d": {"format": "textvqa", "json": "t.json", "images": "i"}}
    default = write(tmp_path / "config.yaml", {"models": {"a": {"path": "x"}}, "datasets": datasets})
    mine = write(tmp_path / "mine.yaml", {"models": {"b": {"path": "y", "bogus": 1}}})
    config = {"models": {"a": {"path": "x"}, "b": {"path": "y", "bogus": 1}}, "datasets": datasets}
    message = invalid_config_message(config, SCHEMA, [default, mine])
    assert message.startswith("invalid config at models.b: ")
    assert "'bogus' was unexpected" in message and f"set in {mine}" in message


def test_every_section_is_optional_and_a_valid_config_has_no_message(tmp_path):
    config = {
        "models": {"m": {"path": "checkpoints/m"}},
        "datasets": {"d": {"format": "vqav2", "questions": "q.json", "annotations": "a.json", "images": "i"}},
        "finetune": {"experiments": {"sft": {"model": "m", "datasets": ["d"]}}},
    }
    assert invalid_config_message(config, SCHEMA, []) is None
    assert invalid_config_message({"finetune": {"experiments": {}}}, SCHEMA, []) is None  # no section is required
    config["finetune"]["experiments"]["sft"]["steps"] = 0
    assert "finetune.experiments.sft.steps: 0 is less than the minimum of 1" in invalid_config_message(
        config, SCHEMA, []
    )
