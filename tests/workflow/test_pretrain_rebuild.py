"""Rebuilding the shipped zoo with today's config gives the same weights: the first steps of
`snakemake pretrain`, from scratch (corpus, build, two optimizer steps), against the digests the
shipped provenance recorded."""

from __future__ import annotations

import json

import pytest
import yaml
from test_workflow import REPO, copy_workflow, snakemake

pytestmark = pytest.mark.workflow


def test_pretraining_rebuilds_the_shipped_first_steps(tmp_path):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    workdir = copy_workflow(tmp_path / "flow", config)
    models = list(config["pretrain"]["models"])
    targets = [f"results/pretrain/{name}/first_steps.json" for name in models]
    run = snakemake(workdir, *targets)
    assert run.returncode == 0, run.stderr[-5000:]
    for name in models:
        rebuilt = json.loads((workdir / f"results/pretrain/{name}/first_steps.json").read_text())
        for scale in sorted((REPO / "resources" / "zoo" / name).glob("samples-*")):
            shipped = json.loads((scale / "provenance.json").read_text())
            assert rebuilt["data_sha256"] == shipped["data_sha256"] == shipped["first_steps"]["data_sha256"], scale
            assert rebuilt["steps"] == shipped["first_steps"]["steps"], scale
