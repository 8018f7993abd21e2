"""The rule files keep the house style: named functions instead of lambdas, a log on every rule,
one set of GPU resources, and each family's rules, scripts and package under one name."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RULE_FILES = sorted((REPO / "rules").glob("*.smk"))
FAMILIES = ("vqa", "finetune", "pretrain", "guided", "probing", "foveated", "conditioning")


def rule_blocks() -> list[tuple[str, str]]:
    """(name, text) of every `rule` / `checkpoint` in the rule files."""
    text = "\n".join(path.read_text() for path in RULE_FILES)
    blocks = re.split(r"^(?=(?:rule|checkpoint|use rule) )", text, flags=re.MULTILINE)
    return [
        (re.match(r"(?:rule|checkpoint) (\w+):", b).group(1), b)
        for b in blocks
        if re.match(r"(?:rule|checkpoint) \w+:", b)
    ]


@pytest.mark.parametrize("path", [REPO / "Snakefile", *RULE_FILES], ids=lambda p: p.name)
def test_no_lambdas_in_rules(path):
    assert "lambda" not in path.read_text(), f"{path.name}: use a named function (params: x=get_x)"


def test_every_rule_has_a_log():
    """Every rule that writes something; a target rule (inputs only, as `all` and `pretrain`) writes nothing."""
    missing = [name for name, block in rule_blocks() if "\n    output:" in block and "\n    log:" not in block]
    assert not missing, f"rules without log: {missing}"


def test_every_gpu_rule_asks_for_the_same_resources():
    own = [name for name, block in rule_blocks() if re.search(r"^\s+gpu\s*=", block, flags=re.MULTILINE)]
    assert not own, f"rules asking for a GPU by themselves instead of **GPU_RESOURCES: {own}"
    shared = {name for name, block in rule_blocks() if re.search(r"\*\*(GPU_RESOURCES|gpu_resources\()", block)}
    assert {
        "infer_vqa",
        "train_model",
        "guided_decode",
        "extract_swap_features",
        "train_foveated",
        "generate_conditioning",
    } <= shared


def test_data_parallel_training_asks_for_the_experiments_gpus():
    """gpus: N on a fine-tuning experiment or a foveated run: the one training job gets N GPUs."""
    blocks = dict(rule_blocks())
    assert "**gpu_resources(train_gpus)" in blocks["train_model"]
    assert "**gpu_resources(foveated_gpus)" in blocks["train_foveated"]


def test_inference_jobs_hold_the_experiments_gpus():
    """gpus: N (with a device map) on a VQA, guided or probing experiment: its jobs get N GPUs."""
    blocks = dict(rule_blocks())
    assert '**gpu_resources(setting(vqa_experiment, "gpus"))' in blocks["infer_vqa"]
    assert '**gpu_resources(setting(guided_spec, "gpus"))' in blocks["guided_decode"]
    assert '**gpu_resources(setting(probing_spec, "gpus"))' in blocks["extract_swap_features"]


@pytest.mark.parametrize("family", FAMILIES)
def test_one_name_per_family(family):
    assert (REPO / "rules" / f"{family}.smk").is_file()
    assert (REPO / "workflow" / "scripts" / family).is_dir()
    assert (REPO / "src" / "vlmflow" / family / "__init__.py").is_file()
    scripts = re.findall(r'script:\n\s+"\.\./workflow/scripts/(\w+)/', (REPO / "rules" / f"{family}.smk").read_text())
    assert scripts and set(scripts) == {family}


def test_common_holds_no_rules():
    assert not re.search(r"^(rule|checkpoint) ", (REPO / "rules" / "common.smk").read_text(), flags=re.MULTILINE)


def test_package_modules_stay_small():
    sizes = {p.relative_to(REPO): len(p.read_text().splitlines()) for p in (REPO / "src" / "vlmflow").rglob("*.py")}
    assert not {p: n for p, n in sizes.items() if n > 400}


def test_planning_imports_no_torch():
    """`snakemake -n` parses the rule files: the modules they import (and the package __init__
    files on the way) must not pull in torch, transformers or polars."""
    text = "\n".join(path.read_text() for path in RULE_FILES + sorted((REPO / "rules" / "functions").glob("*.smk")))
    modules = sorted(set(re.findall(r"^from (vlmflow[\w.]*) import", text, flags=re.MULTILINE)))
    assert modules
    code = f"import sys; import {', '.join(modules)}; print(sorted({{'torch', 'transformers', 'polars'}} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_package_init_files_import_nothing():
    for path in (REPO / "src" / "vlmflow").rglob("__init__.py"):
        assert not re.search(r"^\s*(import|from) ", path.read_text(), flags=re.MULTILINE), path
