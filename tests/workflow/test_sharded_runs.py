"""Sharded inference on the reduced default (VQA, guided decoding with the guide's importance,
hidden-state extraction): the same files for any shard count, one job per shard, and a lost shard
redone alone."""

from __future__ import annotations

import re

import numpy as np
import pytest
from test_workflow import copy_workflow, planned_jobs, reduced_config, snakemake

pytestmark = pytest.mark.workflow

EXPERIMENT = "guide_vqav2"
TARGET = f"results/vqa/{EXPERIMENT}/predictions.jsonl"
GUIDED = "qwen2_5_vl_guided"
GUIDED_FILES = [f"results/guided/{GUIDED}/{m}/rows.jsonl" for m in ("guided", "random")] + [
    f"results/guided/{GUIDED}/guided/importance.parquet"
]

PROBE = "tiny_probe"
PROBING_FILES = [f"results/probing/{PROBE}/npz/{kind}_vanilla.npz" for kind in ("vectors", "cross_group_vectors")]


def sharded_config(shards: int) -> dict:
    config = reduced_config()
    config["vqa"]["experiments"][EXPERIMENT]["shards"] = shards
    config["guided"]["experiments"][GUIDED].update(shards=shards, methods=["guided", "random"])
    config["probing"]["experiments"][PROBE]["shards"] = shards
    return config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The experiment's predictions made by 1, 2 and 3 shards, each in its own copy of the workflow."""
    workdirs = {}
    for shards in (1, 2, 3):
        workdir = copy_workflow(tmp_path_factory.mktemp(f"shards{shards}"), sharded_config(shards))
        run = snakemake(workdir, TARGET, *GUIDED_FILES, *PROBING_FILES)
        assert run.returncode == 0, run.stderr[-5000:]
        workdirs[shards] = workdir
    return workdirs


def test_any_shard_count_gives_byte_identical_predictions(runs):
    one = (runs[1] / TARGET).read_bytes()
    assert one.count(b"\n") == 10
    for shards in (2, 3):
        assert (runs[shards] / TARGET).read_bytes() == one, f"{shards} shards"
        parts = sorted((runs[shards] / f"results/vqa/{EXPERIMENT}/shards").glob("*-of-*.jsonl"))
        assert [p.stem for p in parts] == [f"{i}-of-{shards}" for i in range(1, shards + 1)]
    assert not (runs[1] / f"results/vqa/{EXPERIMENT}/shards").exists()


def test_sharded_guided_decoding_gives_the_same_rows_and_importance(runs):
    for name in GUIDED_FILES:
        one = (runs[1] / name).read_bytes()
        for shards in (2, 3):
            assert (runs[shards] / name).read_bytes() == one, (name, shards)
    shard_jobs = sorted((runs[3] / f"results/guided/{GUIDED}/random/shards").glob("*.rows.jsonl"))
    assert [p.name for p in shard_jobs] == [f"{i}-of-3.rows.jsonl" for i in range(1, 4)]


def test_sharded_extraction_gives_the_same_hidden_states(runs):
    for name in PROBING_FILES:
        with np.load(runs[1] / name) as one_job:
            one = dict(one_job)
        assert len(one["pair_id"]) > 0
        for shards in (2, 3):
            with np.load(runs[shards] / name) as gathered:
                assert list(gathered) == list(one), (name, shards)
                for key, values in one.items():
                    assert np.array_equal(gathered[key], values), (name, shards, key)
            assert (runs[shards] / name).read_bytes() == (runs[1] / name).read_bytes(), (name, shards)
    parts = sorted((runs[3] / f"results/probing/{PROBE}/npz/shards/vanilla").glob("*.vectors.npz"))
    assert [p.name for p in parts] == [f"{i}-of-3.vectors.npz" for i in range(1, 4)]


def test_a_shard_size_plans_the_shards_from_the_cached_dataset(runs, tmp_path):
    config = reduced_config()
    config["vqa"]["experiments"][EXPERIMENT]["shard_size"] = 4  # 10 questions: 3 shards
    workdir = copy_workflow(tmp_path / "size", config)
    run = snakemake(workdir, TARGET)
    assert run.returncode == 0, run.stderr[-5000:]
    assert "checkpoint count_records" in run.stdout + run.stderr
    parts = sorted((workdir / f"results/vqa/{EXPERIMENT}/shards").glob("*.jsonl"))
    assert [p.stem for p in parts] == ["1-of-3", "2-of-3", "3-of-3"]
    assert (workdir / TARGET).read_bytes() == (runs[1] / TARGET).read_bytes()


def test_a_dry_run_shows_one_job_per_shard_and_the_gather(tmp_path):
    workdir = copy_workflow(tmp_path / "dry", sharded_config(3))
    run = snakemake(workdir, TARGET, *PROBING_FILES, "--dry-run")
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = planned_jobs(run.stdout)
    shards = sorted(w for rule, w in jobs if rule == "infer_vqa_shard")
    assert shards == [f"experiment={EXPERIMENT}, shard={i}-of-3" for i in range(1, 4)]
    assert ("gather_vqa_shards", f"experiment={EXPERIMENT}") in jobs
    assert not [rule for rule, _ in jobs if rule in ("infer_vqa", "extract_swap_features")]
    extraction = sorted(w for rule, w in jobs if rule == "extract_swap_features_shard")
    assert extraction == [f"experiment={PROBE}, scale=vanilla, shard={i}-of-3" for i in range(1, 4)]
    assert ("gather_swap_features", f"experiment={PROBE}, scale=vanilla") in jobs


def test_a_device_mapped_experiment_holds_its_gpus_in_every_shard_job(tmp_path):
    config = sharded_config(2)
    config["vqa"]["experiments"][EXPERIMENT].update(gpus=2, device_map="auto")
    run = snakemake(copy_workflow(tmp_path / "gpus", config), TARGET, "--dry-run")
    assert run.returncode == 0, run.stderr[-3000:]
    blocks = [
        b for b in re.split(r"^(?=rule \w+:$)", run.stdout, flags=re.MULTILINE) if b.startswith("rule infer_vqa_shard:")
    ]
    assert len(blocks) == 2 and all("gpu=2" in block for block in blocks), blocks


def test_a_lost_shard_is_redone_alone_and_the_gather_is_the_same(runs):
    workdir = runs[3]
    # A killed shard job leaves no output (its rows wait in the .partial file), so the gather never ran.
    (workdir / f"results/vqa/{EXPERIMENT}/shards/2-of-3.jsonl").unlink()
    (workdir / TARGET).unlink()
    plan = snakemake(workdir, TARGET, "--dry-run")
    assert sorted(planned_jobs(plan.stdout)) == [
        ("gather_vqa_shards", f"experiment={EXPERIMENT}"),
        ("infer_vqa_shard", f"experiment={EXPERIMENT}, shard=2-of-3"),
    ]
    run = snakemake(workdir, TARGET)
    assert run.returncode == 0, run.stderr[-5000:]
    assert (workdir / TARGET).read_bytes() == (runs[1] / TARGET).read_bytes()
