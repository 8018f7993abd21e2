"""Every ready config in configs/ plans, run the documented way, exactly the families it declares.

Each file is dry-run in a temporary copy of the workflow with `--replace-workflow-config`, over
empty placeholders at every checkpoint and data path it names (a dry run only needs them to exist),
so no checkpoint is downloaded and nothing synthetic may stand in for the real data.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
WORKFLOW_FILES = ["Snakefile", "rules", "workflow", "envs", "config.yaml"]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
FAMILIES = ("vqa", "finetune", "guided", "probing", "foveated", "conditioning")

pytestmark = pytest.mark.workflow

# Dataset keys that name a file, and those that name a folder, of each format.
DATASET_FILES = ("questions", "annotations", "json", "parquet", "tsv", "boxes", "jsonl", "csv", "case_list")
DATASET_FOLDERS = ("images", "path")


def copy_workflow(dest: Path, config_file: Path) -> Path:
    dest.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, dest / name)
    (dest / "configs").mkdir()
    shutil.copy(config_file, dest / "configs" / config_file.name)
    return dest


def placeholder_paths(config: dict) -> tuple[list[str], list[str]]:
    """(files, folders) the config names as checkpoints, data and reference images."""
    files, folders = [], []
    for spec in config.get("models", {}).values():
        folders += [spec[key] for key in ("path", "internvl_chat") if key in spec]
    for spec in config.get("datasets", {}).values():
        files += [spec[key] for key in DATASET_FILES if spec.get(key)]
        folders += [spec[key] for key in DATASET_FOLDERS if key in spec]
    foveated = config.get("foveated", {})
    for spec in foveated.get("models", {}).values():
        folders += [spec[key] for key in ("vision", "language") if key in spec]
    for spec in foveated.get("data", {}).values():
        files += [spec["train"], spec["val"]]
    conditioning = config.get("conditioning", {})
    for spec in conditioning.get("models", {}).values():
        folders += [spec[key] for key in ("pipeline", "vlm") if key in spec]
    sections = [conditioning.get("defaults", {}), conditioning.get("analysis") or {}]
    files += [spec["image"] for spec in [*sections, *conditioning.get("experiments", {}).values()] if "image" in spec]
    return files, folders


def make_placeholders(workdir: Path, config: dict) -> None:
    files, folders = placeholder_paths(config)
    for path in [*files, *folders]:
        assert not Path(path).is_absolute() and not any(c in path for c in "*?["), path
        assert path.split("/")[0] in ("checkpoints", "data"), f"{path}: not under checkpoints/ or data/"
    for folder in folders:
        (workdir / folder).mkdir(parents=True, exist_ok=True)
    for file in files:
        (workdir / file).parent.mkdir(parents=True, exist_ok=True)
        (workdir / file).touch()


def rule_families() -> dict[str, str]:
    """Every rule and checkpoint name -> the stem of the rules/*.smk file that defines it."""
    names = re.compile(r"^(?:(?:rule|checkpoint) (\w+):|use rule \w+ as (\w+) with:)", re.MULTILINE)
    return {
        first or second: path.stem
        for path in (REPO / "rules").glob("*.smk")
        for first, second in names.findall(path.read_text())
    }


def planned_rules(output: str) -> set[str]:
    """The rules of every job a dry run lists (local rules too)."""
    return set(re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):$", output, flags=re.MULTILINE))


def test_there_are_example_configs():
    assert CONFIGS, "configs/ holds no *.yaml"


@pytest.mark.parametrize("config_file", CONFIGS, ids=lambda p: p.name)
def test_example_config_plans_its_families(tmp_path, config_file):
    config = yaml.safe_load(config_file.read_text())
    workdir = copy_workflow(tmp_path / "flow", config_file)
    make_placeholders(workdir, config)
    command = ["results/summary.csv", "--configfile", f"configs/{config_file.name}", "--replace-workflow-config"]
    dry = subprocess.run(
        [SNAKEMAKE, *command, "--dry-run", "--cores", "2"], cwd=workdir, capture_output=True, text=True, timeout=600
    )
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    assert "extends the embedded default" not in dry.stderr

    planned = planned_rules(dry.stdout)
    assert not {rule for rule in planned if rule.startswith("synth_")}, planned  # nothing synthetic stands in
    families = rule_families()
    assert planned <= families.keys(), planned - families.keys()
    declared = {family for family in FAMILIES if config.get(family)}
    assert declared, "the config declares no experiment family"
    # Fine-tuning evaluates the base and the trained model through the vqa rules.
    allowed = declared | ({"vqa"} if "finetune" in declared else set())
    ran = {families[rule] for rule in planned} & set(FAMILIES)
    assert declared <= ran <= allowed, (declared, ran)
    assert not {rule for rule in planned if families[rule] == "pretrain"}, planned
    assert "summary" in planned
    assert ("ablation_table" in planned) == bool(config.get("ablations"))
