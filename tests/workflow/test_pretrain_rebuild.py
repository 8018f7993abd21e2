"""Rebuilding the shipped zoo with today's config gives the same weights: the first steps of
`snakemake pretrain`, from scratch (corpus, build, two optimizer steps), against the digests the
shipped provenance recorded."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml
from test_workflow import REPO, copy_workflow, snakemake

pytestmark = pytest.mark.workflow


def test_pretraining_rebuilds_the_shipped_first_steps(tmp_path):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    models = config["pretrain"]["models"]
    # A model that starts from another's pretrained tower starts here from that model's shipped last
    # scale (hours of training otherwise), which must be the tower its provenance records.
    for spec in models.values():
        if spec.get("vision_from") in models:
            last = max(
                int(p.name.split("-")[1]) for p in (REPO / "resources/zoo" / spec["vision_from"]).glob("samples-*")
            )
            spec["vision_from"] = str(REPO / "resources/zoo" / spec["vision_from"] / f"samples-{last}")
    workdir = copy_workflow(tmp_path / "flow", config)
    targets = [f"results/pretrain/{name}/first_steps.json" for name in models]
    run = snakemake(workdir, *targets)
    assert run.returncode == 0, run.stderr[-5000:]
    for name, spec in models.items():
        rebuilt = json.loads((workdir / f"results/pretrain/{name}/first_steps.json").read_text())
        for scale in sorted((REPO / "resources" / "zoo" / name).glob("samples-*")):
            shipped = json.loads((scale / "provenance.json").read_text())
            assert rebuilt["data_sha256"] == shipped["data_sha256"] == shipped["first_steps"]["data_sha256"], scale
            assert rebuilt["steps"] == shipped["first_steps"]["steps"], scale
            if "vision_from" in spec:
                tower = hashlib.sha256((REPO / spec["vision_from"] / "model.safetensors").read_bytes()).hexdigest()
                assert shipped["vision_from"]["weights_sha256"] == tower, scale
