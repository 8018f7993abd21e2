"""Rebuilding the shipped zoo with today's config gives the same weights: the first steps of
`snakemake pretrain`, from scratch (corpus, build, two optimizer steps), against the digests the
shipped provenance recorded, for every model, the foveated parts and the conditioning pipeline.

The build's weights must match bit for bit anywhere. After an optimizer step they match bit for bit
only on the `float_machine` that recorded them (torch's version and CPU kernels); elsewhere the
losses must agree to float rounding, as PyTorch promises no more across platforms."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml
from test_workflow import REPO, copy_workflow, snakemake

pytestmark = pytest.mark.workflow

SOURCES = ("vision_from", "init_from")  # what a model may start from besides its own random build
LOSS_TOLERANCE = 1e-5  # relative: float32 rounding in another order, not another step


def assert_same_steps(rebuilt: list[dict], shipped: list[dict], same_machine: bool, name: str) -> None:
    assert [r["step"] for r in rebuilt] == [s["step"] for s in shipped], name
    assert rebuilt[0]["weights_sha256"] == shipped[0]["weights_sha256"], f"{name}: the build differs"
    for mine, theirs in zip(rebuilt[1:], shipped[1:], strict=True):
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=LOSS_TOLERANCE), (name, mine["step"])
        if same_machine:
            assert mine["weights_sha256"] == theirs["weights_sha256"], (name, mine["step"])


def test_pretraining_rebuilds_the_shipped_first_steps(tmp_path):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    models = config["pretrain"]["models"]
    # A model that starts from another's pretrained tower or weights starts here from that model's
    # shipped last scale (hours of training otherwise), which must be the one its provenance records.
    for spec in models.values():
        for key in SOURCES:
            if spec.get(key) in models:
                last = max(int(p.name.split("-")[1]) for p in (REPO / "resources/zoo" / spec[key]).glob("samples-*"))
                spec[key] = str(REPO / "resources/zoo" / spec[key] / f"samples-{last}")
    workdir = copy_workflow(tmp_path / "flow", config)
    parts = config["pretrain"].get("foveated", {})
    pipelines = config["pretrain"].get("conditioning", {})
    targets = [f"results/pretrain/{name}/first_steps.json" for name in [*models, *parts, *pipelines]]
    run = snakemake(workdir, *targets)
    assert run.returncode == 0, run.stderr[-5000:]
    for name in parts:  # the foveated parts: one shipped folder each
        rebuilt = json.loads((workdir / f"results/pretrain/{name}/first_steps.json").read_text())
        (folder,) = (REPO / "resources" / "zoo" / name).glob("samples-*")
        shipped = json.loads((folder / "provenance.json").read_text())
        assert rebuilt["data_sha256"] == shipped["data_sha256"] == shipped["first_steps"]["data_sha256"], name
        same = rebuilt["machine"] == shipped["first_steps"].get("machine")
        assert_same_steps(rebuilt["steps"], shipped["first_steps"]["steps"], same, name)
    for name in pipelines:  # the conditioning pipelines: each part's first steps from the random build
        rebuilt = json.loads((workdir / f"results/pretrain/{name}/first_steps.json").read_text())
        shipped = json.loads((REPO / "resources" / "zoo" / name / "provenance.json").read_text())
        same = rebuilt.pop("machine") == shipped["first_steps"].get("machine")
        for part, steps in rebuilt.items():
            assert_same_steps(steps, shipped["first_steps"][part], same, f"{name} {part}")
    for name, spec in models.items():
        rebuilt = json.loads((workdir / f"results/pretrain/{name}/first_steps.json").read_text())
        for scale in sorted((REPO / "resources" / "zoo" / name).glob("samples-*")):
            shipped = json.loads((scale / "provenance.json").read_text())
            assert rebuilt["data_sha256"] == shipped["data_sha256"] == shipped["first_steps"]["data_sha256"], scale
            same = rebuilt["machine"] == shipped["first_steps"].get("machine")
            assert_same_steps(rebuilt["steps"], shipped["first_steps"]["steps"], same, str(scale))
            for key in SOURCES:
                if key in spec:
                    source = hashlib.sha256((REPO / spec[key] / "model.safetensors").read_bytes()).hexdigest()
                    assert shipped[key]["weights_sha256"] == source, scale
