"""Rebuilding the shipped zoo with today's config gives the same weights: the first steps of
`snakemake pretrain`, from scratch (corpus, build, two optimizer steps), against the digests the
shipped provenance recorded, for every model, the foveated parts and the conditioning pipeline."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml
from test_workflow import REPO, copy_workflow, snakemake

pytestmark = pytest.mark.workflow

SOURCES = ("vision_from", "init_from")  # what a model may start from besides its own random build


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
        assert rebuilt["steps"] == shipped["first_steps"]["steps"], name
    for name in pipelines:  # the conditioning pipelines: each part's first steps from the random build
        rebuilt = json.loads((workdir / f"results/pretrain/{name}/first_steps.json").read_text())
        shipped = json.loads((REPO / "resources" / "zoo" / name / "provenance.json").read_text())
        assert rebuilt == shipped["first_steps"], name
    for name, spec in models.items():
        rebuilt = json.loads((workdir / f"results/pretrain/{name}/first_steps.json").read_text())
        for scale in sorted((REPO / "resources" / "zoo" / name).glob("samples-*")):
            shipped = json.loads((scale / "provenance.json").read_text())
            assert rebuilt["data_sha256"] == shipped["data_sha256"] == shipped["first_steps"]["data_sha256"], scale
            assert rebuilt["steps"] == shipped["first_steps"]["steps"], scale
            for key in SOURCES:
                if key in spec:
                    source = hashlib.sha256((REPO / spec[key] / "model.safetensors").read_bytes()).hexdigest()
                    assert shipped[key]["weights_sha256"] == source, scale
