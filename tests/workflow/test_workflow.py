"""The Snakefile end to end on a reduced default, in a temporary copy of the workflow."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import system_packages
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoProcessor

from vlmflow.foveated.model import from_parts, load_frame_lm
from vlmflow.synth.vqav2 import write_vqav2
from vlmflow.zoo.provenance import float_machine, state_digest

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
WORKFLOW_FILES = ["Snakefile", "rules", "workflow", "envs"]

pytestmark = pytest.mark.workflow

# The zoo families the reduced config runs besides Qwen2-VL and LLaVA (one `<family>_vqav2` each).
FAMILIES = ["qwen2_5_vl", "qwen3_vl", "internvl", "idefics3", "smolvlm", "llava_onevision", "gemma3", "paligemma"]


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SNAKEMAKE, "--cores", "2", *args], cwd=workdir, capture_output=True, text=True, timeout=1800)


def copy_workflow(dest: Path, config: dict) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, dest / name)
    (dest / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return dest


def reduced_config() -> dict:
    return yaml.safe_load((REPO / "tests" / "workflow" / "config.yaml").read_text())


def job_blocks(output: str) -> list[str]:
    """A dry run's output cut before each job's `rule <name>:` line."""
    return re.split(r"^(?=rule \w+:$)", output, flags=re.MULTILINE)


def planned_jobs(output: str) -> list[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run lists."""
    planned = []
    for block in job_blocks(output):
        head = re.match(r"rule (\w+):$", block, flags=re.MULTILINE)
        if head:
            wildcards = re.search(r"^\s+wildcards: (.*)$", block, flags=re.MULTILINE)
            planned.append((head.group(1), wildcards.group(1) if wildcards else ""))
    return planned


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """The reduced default run once from scratch; later tests inspect and re-plan it."""
    workdir = copy_workflow(tmp_path_factory.mktemp("flow"), reduced_config())
    run = snakemake(workdir, "results/summary.csv")  # the README's command: every declared output
    assert run.returncode == 0, run.stderr[-5000:]
    return workdir


def test_both_targets_make_the_same_outputs(finished_run):
    """After `snakemake results/summary.csv` the default target has nothing left to do."""
    dry = snakemake(finished_run, "--dry-run")
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]


def test_a_missing_model_stops_both_targets(finished_run):
    """An experiment added after a finished run whose model folder does not exist: both targets
    stop with Snakemake's missing-input error naming the folder, and nothing runs."""
    config_file = finished_run / "config.yaml"
    original = config_file.read_text()
    config = yaml.safe_load(original)
    config["models"]["absent"] = {"path": "checkpoints/not-downloaded-yet"}
    experiment = next(iter(config["vqa"]["experiments"].values()))
    config["vqa"]["experiments"]["absent_vqa"] = {"model": "absent", "dataset": experiment["dataset"]}
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    try:
        for target in ([], ["results/summary.csv"]):
            run = snakemake(finished_run, *target)
            assert run.returncode != 0, target
            assert "MissingInputException" in run.stderr and "checkpoints/not-downloaded-yet" in run.stderr, target
        assert not (finished_run / "results" / "vqa" / "absent_vqa").exists()
    finally:
        config_file.write_text(original)


def test_summary_has_an_accuracy_row_per_experiment(finished_run):
    summary = pl.read_csv(finished_run / "results" / "summary.csv")
    assert summary.columns == [
        "experiment", "stage", "family", "model", "dataset", "metric", "kind", "value", "n", "n_of", "source"
    ]  # fmt: skip
    overall = summary.filter(pl.col("metric").is_in(["vqa_accuracy", "exact_match"]))
    experiments = [*reduced_config()["vqa"]["experiments"], "guide_vqav2.blank_image", "guide_swap.blank_image"]
    vqa = overall.filter(pl.col("family") == "vqa")
    assert sorted(vqa["experiment"]) == sorted(experiments)
    stages = dict(zip(vqa["experiment"], vqa["stage"].fill_null(""), strict=True))
    assert stages["guide_vqav2.blank_image"] == "blank_image" and stages["guide_vqav2"] == ""
    assert set(summary["kind"]) == {"result", "training", "timing"}
    finetune = overall.filter(pl.col("family") == "finetune")
    assert set(finetune["stage"]) == {"base", "trained"} and set(finetune["n_of"]) == {"questions"}
    by_name = {row["experiment"]: row for row in overall.iter_rows(named=True)}
    assert by_name["guide_vqav2"]["metric"] == "vqa_accuracy" and by_name["guide_vqav2"]["n"] == 10
    assert by_name["guide_kvasir"]["metric"] == "exact_match" and by_name["guide_kvasir"]["n"] == 8
    assert by_name["guide_swap"]["n"] == 24  # 12 pairs, two questions each
    assert all(0.0 <= v <= 1.0 for v in overall["value"])
    assert summary.filter(pl.col("metric").str.starts_with("vqa_accuracy/answer_type=")).height > 0
    for log in ("logs/summary.log", "logs/vqa/guide_vqav2/infer.log", "logs/cache/vqav2_val.log"):
        assert (finished_run / log).is_file(), log


def test_per_type_tables_and_ablation(finished_run):
    kvasir = json.loads((finished_run / "results/vqa/guide_kvasir_constrained/metrics.json").read_text())
    assert kvasir["typed"]["n"] == 8 and set(kvasir["typed"]["per_type"]) <= {
        "yes_no",
        "color",
        "count_numeric",
        "size_numeric",
        "location",
        "single_choice",
        "multi_choice",
    }
    cache = [json.loads(line) for line in (finished_run / "results/cache/kvasir_val.jsonl").read_text().splitlines()]
    closed = [r for r in cache if r["candidates"]]
    predictions = {
        row["question_id"]: row["prediction"]
        for row in map(json.loads, (finished_run / "results/vqa/guide_kvasir_constrained/predictions.jsonl").open())
    }
    assert closed and all(predictions[r["question_id"]] in r["candidates"] for r in closed)
    assert (finished_run / "results/vqa/guide_kvasir/per_type.md").read_text().count("|") > 10
    table = pl.read_csv(finished_run / "results/ablations/kvasir_decoding.csv")
    assert table["experiment"].to_list() == ["guide_kvasir", "guide_kvasir_constrained"]
    assert table["decoding"].to_list() == ["free", "constrained"] and "typed_macro" in table.columns
    summary = pl.read_csv(finished_run / "results" / "summary.csv")
    two_pass = summary.filter(pl.col("experiment") == "guide_vqav2_two_pass")
    assert {"format_adherence", "typed_accuracy/micro"} <= set(two_pass["metric"])


def test_blank_image_control_sits_beside_its_experiment(finished_run):
    """`controls: [blank_image]`: the same model, prompts and questions on uniform grey images of the
    original sizes, in the summary right after the experiment; swap pairs also score both-correct."""
    summary = pl.read_csv(finished_run / "results" / "summary.csv").filter(pl.col("family") == "vqa")
    order = summary["experiment"].unique(maintain_order=True).to_list()
    assert order[order.index("guide_vqav2") + 1] == "guide_vqav2.blank_image"
    control = summary.filter(pl.col("experiment") == "guide_swap.blank_image")
    assert set(control["dataset"]) == {"swap_val.blank_image"} and set(control["model"]) == {"guide"}
    assert "exact_match/both_correct" in set(control["metric"])
    real = [json.loads(line) for line in (finished_run / "results/cache/vqav2_val.jsonl").open()]
    blank = [json.loads(line) for line in (finished_run / "results/cache/vqav2_val.blank_image.jsonl").open()]
    assert [r["question_id"] for r in blank] == [r["question_id"] for r in real]
    for original, copy in zip(real, blank, strict=True):
        assert {k: v for k, v in copy.items() if k not in ("image", "image_file")} == {
            k: v for k, v in original.items() if k not in ("image", "image_file")
        }
        pixels = np.asarray(Image.open(finished_run / copy["image"]))
        assert pixels.shape == np.asarray(Image.open(finished_run / original["image"])).shape
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) == 1
    predictions = [
        json.loads(line) for line in (finished_run / "results/vqa/guide_vqav2.blank_image/predictions.jsonl").open()
    ]
    assert sorted(p["question_id"] for p in predictions) == sorted(r["question_id"] for r in real)


def test_pretrain_target_ships_each_scale_with_provenance(finished_run):
    """`snakemake pretrain`: each scale exported in fp16 (the fp32 training weights, rounded),
    evaluated, packaged with a provenance whose first-steps digests are the real run's; published
    as resources/zoo/, the default plots it from there and plans nothing else."""
    run = snakemake(finished_run, "pretrain")
    assert run.returncode == 0, run.stderr[-5000:]
    zoo = finished_run / "results" / "pretrain" / "zoo" / "tiny_zoo"
    assert sorted(p.name for p in zoo.iterdir()) == ["samples-0", "samples-4", "samples-8"]
    training = finished_run / "results" / "pretrain" / "tiny_zoo"
    for samples, step in ((0, 0), (4, 2), (8, 4)):
        scale = zoo / f"samples-{samples}"
        record = json.loads((scale / "provenance.json").read_text())
        assert record["samples"] == samples and record["dtype"] == "float16"
        assert record["weights_sha256"] == hashlib.sha256((scale / "model.safetensors").read_bytes()).hexdigest()
        shipped = load_file(scale / "model.safetensors")
        trained = load_file(training / f"step-{step}" / "model.safetensors")
        assert shipped.keys() == trained.keys()
        assert all(torch.equal(shipped[k], trained[k].half()) for k in trained if trained[k].is_floating_point())
        assert set(record["evaluation"]) == {"vqav2_val", "swap_val"}
        assert "both_correct" in record["evaluation"]["swap_val"]
        assert [p["samples"] for p in record["training_curve"]] == [2 * s for s in range(1, step + 1)]
        assert record["config"]["build"]["family"] == "qwen2_vl" and len(record["data_sha256"]) == 64
        assert not (scale / "trainer_state").exists()
    first = record["first_steps"]
    assert [s["step"] for s in first["steps"]] == [0, 1, 2]
    for step in (0, 2):  # the recorded first steps are the run's own
        model = AutoModelForImageTextToText.from_pretrained(training / f"step-{step}", dtype=torch.float32)
        assert first["steps"][step]["weights_sha256"] == state_digest(model), step
    model = AutoModelForImageTextToText.from_pretrained(zoo / "samples-8")
    assert model.dtype == torch.float16 and AutoProcessor.from_pretrained(zoo / "samples-8").tokenizer is not None

    # vision_from: step 0 is tiny_zoo's shipped tower under the wider model's own random build
    wide = finished_run / "results" / "pretrain" / "tiny_zoo_wide"
    start = load_file(wide / "step-0" / "model.safetensors")
    random_build = load_file(wide / "random" / "model.safetensors")
    tower_source = load_file(zoo / "samples-8" / "model.safetensors")
    assert start.keys() == random_build.keys()
    for name, tensor in start.items():
        tower = name.startswith("visual.") and not name.startswith("visual.merger.")  # the checkpoint's key names
        assert torch.equal(tensor, tower_source[name].float() if tower else random_build[name]), name
    wide_record = json.loads((zoo.parent / "tiny_zoo_wide" / "samples-4" / "provenance.json").read_text())
    assert (
        wide_record["vision_from"]["weights_sha256"]
        == hashlib.sha256((zoo / "samples-8" / "model.safetensors").read_bytes()).hexdigest()
    )

    # init_from: step 0 is tiny_zoo's shipped last scale in float32; its stage trains on its own data
    more = finished_run / "results" / "pretrain" / "tiny_zoo_more"
    start = load_file(more / "step-0" / "model.safetensors")
    assert start.keys() == tower_source.keys()
    assert all(torch.equal(start[k], v.float() if v.is_floating_point() else v) for k, v in tower_source.items())
    more_record = json.loads((zoo.parent / "tiny_zoo_more" / "samples-4" / "provenance.json").read_text())
    assert more_record["init_from"] == {
        "weights": "results/pretrain/weights/tiny_zoo/samples-8",
        "weights_sha256": hashlib.sha256((zoo / "samples-8" / "model.safetensors").read_bytes()).hexdigest(),
        "model": "tiny_zoo",
        "samples": 8,
    }
    assert more_record["data_sha256"] != record["data_sha256"]  # vqav2 alone, not tiny_zoo's corpus
    assert [p["samples"] for p in more_record["training_curve"]] == [2, 4]
    trained = load_file(more / "step-2" / "model.safetensors")
    assert any(not torch.equal(trained[k], start[k]) for k in start)

    # the foveated parts: the multi-token run's encoder and language model, fp16, with provenance
    parts = zoo.parent / "tiny_parts" / "samples-8"
    assert sorted(p.name for p in parts.iterdir() if p.name != ".snakemake_timestamp") == [
        "language",
        "provenance.json",
        "vision",
    ]  # Snakemake's timestamp of a folder output: `make pretrain` deletes it
    parts_record = json.loads((parts / "provenance.json").read_text())
    trained, _, _ = load_frame_lm(finished_run / "results" / "pretrain" / "tiny_parts" / "model")
    assert trained.architecture == "multi_token"
    shipped, _, _ = from_parts(parts / "vision", parts / "language", {"architecture": "multi_token", "grid": 2})
    for name, tensor in trained.state_dict().items():
        if not name.startswith("connector."):  # the baseline's connector is not shipped
            assert torch.equal(shipped.state_dict()[name], tensor.half()), name
    for part in ("vision", "language"):
        digest = hashlib.sha256((parts / part / "model.safetensors").read_bytes()).hexdigest()
        assert parts_record["weights_sha256"][part] == digest, part
    assert parts_record["samples"] == 8 and parts_record["dtype"] == "float16"
    assert [row["samples"] for row in parts_record["evaluations"]] == [0, 4, 8]
    assert set(parts_record["evaluation"]["shapes_val"]["per_question_type"]) <= {"video", "image", "text"}
    assert [p["samples"] for p in parts_record["training_curve"]] == [4, 8]
    assert [s["step"] for s in parts_record["first_steps"]["steps"]] == [0, 1, 2]
    random_build, _, _ = from_parts(
        finished_run / "results/pretrain/tiny_parts/random/vision",
        finished_run / "results/pretrain/tiny_parts/random/language",
        {**parts_record["config"]["settings"]},
        parts_record["config"]["settings"]["seed"],
    )
    assert parts_record["first_steps"]["steps"][0]["weights_sha256"] == state_digest(random_build.float())

    # the conditioning pipeline: each part trained by its objective, shipped as pipeline/ + vlm/ in fp16
    pipeline_zoo = zoo.parent / "tiny_zimage"
    zimage_record = json.loads((pipeline_zoo / "provenance.json").read_text())
    assert list(zimage_record["parts"]) == ["text_encoder", "vae", "transformer", "vlm"]
    assert all(p["steps"] == 2 and len(p["training_curve"]) == 2 for p in zimage_record["parts"].values())
    run_dir = finished_run / "results" / "pretrain" / "tiny_zimage"
    for part, weights in (("transformer", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model")):
        trained = load_file(run_dir / part / f"{weights}.safetensors")
        shipped = load_file(pipeline_zoo / "pipeline" / part / f"{weights}.safetensors")
        assert shipped.keys() == trained.keys()
        assert all(torch.equal(shipped[k], v.half()) for k, v in trained.items()), part
    assert zimage_record["evaluation"]["caption_following"]["n"] == 4  # the default's val scenes
    assert zimage_record["evaluation"]["captioning"]["n"] == 4
    first_steps = {part: [r["step"] for r in zimage_record["first_steps"][part]] for part in zimage_record["parts"]}
    assert first_steps == dict.fromkeys(zimage_record["parts"], [0, 2])
    assert zimage_record["first_steps"]["machine"] == float_machine()
    assert not any(run_dir.glob("*.state"))  # finished parts leave no resume state behind

    shutil.copytree(zoo.parent, finished_run / "resources" / "zoo")  # what `make pretrain` publishes
    try:
        figures = [
            f"results/pretrain/{name}/pretraining.png"
            for name in ("tiny_zoo", "tiny_zoo_wide", "tiny_zoo_more", "tiny_parts", "tiny_zimage")
        ]
        plot = snakemake(finished_run, *figures)
        assert plot.returncode == 0, plot.stderr[-3000:]
        assert all((finished_run / figure).stat().st_size > 0 for figure in figures)
        dry = snakemake(finished_run, "results/summary.csv", "--dry-run")  # the published zoo's figure joins
        assert dry.returncode == 0, dry.stderr[-3000:]
        assert {rule for rule, _ in planned_jobs(dry.stdout)} <= {"summary", "all"}  # nothing retrains
    finally:
        shutil.rmtree(finished_run / "resources" / "zoo")


def test_fine_tuning_chain(finished_run):
    train = finished_run / "results" / "finetune"
    for stage in ("tiny_sft/step-2", "tiny_sft/step-4", "tiny_lora/step-2"):
        model = AutoModelForImageTextToText.from_pretrained(train / stage)
        assert type(model).__name__ == "Qwen2VLForConditionalGeneration", stage
    assert len((train / "tiny_sft" / "step-4" / "train_log.jsonl").read_text().splitlines()) == 4
    assert (train / "tiny_lora" / "step-2" / "adapter" / "adapter_config.json").is_file()
    assert (train / "tiny_sft" / "loss.png").stat().st_size > 0
    labels = [json.loads(line) for line in (train / "tiny_sft" / "label_check.jsonl").read_text().splitlines()]
    assert labels and all(row["supervised_text"].endswith("<|im_end|>") for row in labels)
    assert json.loads((train / "tiny_sft" / "sanity.json").read_text())["passed"]

    summary = pl.read_csv(finished_run / "results" / "summary.csv").filter(pl.col("family") == "finetune")
    accuracy = summary.filter((pl.col("metric") == "vqa_accuracy") & (pl.col("experiment") == "tiny_sft"))
    assert sorted(accuracy["model"]) == ["guide", "tiny_sft"], "base and trained model side by side"
    assert set(accuracy["dataset"]) == {"vqav2_val"}
    losses = summary.filter(pl.col("metric") == "train_loss_final")
    assert sorted(losses["experiment"]) == ["tiny_lora", "tiny_sft"]


def test_guided_pruning_family(finished_run):
    guided = finished_run / "results" / "guided"
    table = pl.read_csv(guided / "tiny_guided" / "retention.csv")
    assert table.height == 3 * 2 + 1  # {guided, fastv, random} x {1, 0.5}, and the guide alone
    unpruned = table.filter(pl.col("keep_ratio") == 1.0)
    assert unpruned["vqa_accuracy"].n_unique() == 1, "keep 1 is the unpruned model whatever the ranking"
    half = table.filter(pl.col("keep_ratio") == 0.5)
    assert set(half["visual_tokens"]) == {2.0}  # 56 px: 4 visual tokens, half kept
    importance = pl.read_parquet(guided / "tiny_guided" / "guided" / "importance.parquet")
    assert importance.height == 10 and set(importance["n_visual"]) == {4}
    rows = [json.loads(line) for line in (guided / "tiny_guided" / "guided" / "rows.jsonl").read_text().splitlines()]
    assert {"confidence", "consistency", "exit_score"} <= set(rows[0]["guide"]) and "importance" not in rows[0]
    sweep = pl.read_csv(guided / "tiny_guided" / "early_exit.csv")
    assert {0.0, 1.0} <= set(sweep["decode_call_fraction"])
    for figure in ("tiny_guided/accuracy_vs_retention.png", "tiny_guided/early_exit.png"):
        assert (guided / figure).stat().st_size > 0, figure
    stats = json.loads((guided / "compare" / "tiny_cot_attention.json").read_text())
    assert stats["n"] == 10 and 0.0 <= stats["avg_jsd"] <= 0.7
    assert "| avg_l1 |" in (guided / "compare" / "tiny_cot_attention.md").read_text()
    hybrid = AutoModelForImageTextToText.from_pretrained(finished_run / "resources" / "models" / "hybrid")
    donor = AutoModelForImageTextToText.from_pretrained(finished_run / "results" / "finetune" / "tiny_sft" / "step-4")
    assert hybrid.config.text_config.hidden_size == 48
    assert (hybrid.model.visual.blocks[0].attn.qkv.weight == donor.model.visual.blocks[0].attn.qkv.weight).all()
    summary = pl.read_csv(finished_run / "results" / "summary.csv").filter(pl.col("family") == "guided")
    assert "tiny_guided.guided.keep-0.5" in set(summary["experiment"])
    assert "avg_top16_overlap" in set(summary.filter(pl.col("experiment") == "tiny_cot_attention")["metric"])


def test_every_model_family_answers_and_both_qwen_pairs_prune(finished_run):
    """One inference experiment per zoo family, and guided pruning on a Qwen2.5-VL and a Qwen3-VL pair."""
    summary = pl.read_csv(finished_run / "results" / "summary.csv")
    accuracy = summary.filter(pl.col("metric") == "vqa_accuracy")
    for family in FAMILIES:
        rows = accuracy.filter(pl.col("experiment") == f"{family}_vqav2")
        assert rows.height == 1 and rows["n"][0] == 10, family
        predictions = finished_run / "results" / "vqa" / f"{family}_vqav2" / "predictions.jsonl"
        assert len(predictions.read_text().splitlines()) == 10, family
    for pair in ("qwen2_5_vl", "qwen3_vl"):
        for keep in ("1", "0.5"):
            rows = accuracy.filter(pl.col("experiment") == f"{pair}_guided.guided.keep-{keep}")
            assert rows.height == 1 and rows["n"][0] == 10, (pair, keep)


def test_probing_family(finished_run):
    root = finished_run / "results" / "probing" / "tiny_probe"
    scales = ["vanilla", "step-2", "step-4"]  # the base model and tiny_sft's two checkpoints
    with np.load(root / "npz" / "vectors_step-4.npz") as vectors:
        assert vectors["layers"].tolist() == [0, 1]  # [0, -1] of the guide's 2-layer language model
        assert len(vectors["pair_id"]) == 12 and vectors["delta_L1"].dtype == np.float16
        assert np.allclose(vectors["delta_L1"], vectors["swap_L1"].astype(np.float32) - vectors["orig_L1"], atol=1e-2)
        distance_pairs = int((vectors["group"] == "distance").sum())
    with np.load(root / "npz" / "cross_group_vectors_step-4.npz") as cross:
        assert 0 < len(cross["pair_id"]) == distance_pairs
    summary = pl.read_csv(root / "csv" / "summary.csv")
    assert summary["scale"].unique(maintain_order=True).to_list() == scales
    assert summary.filter(pl.col("scale") == "step-2")["model"].unique().to_list() == ["tiny_sft/step-2"]
    alignment = json.loads((root / "json" / "cross_alignment_step-4_all.json").read_text())
    assert set(alignment) == {"L0", "L1"} and 0 < alignment["L1"]["p_value"] <= 1
    for figure in (
        "plots/ablation.png",
        "plots/sign_corrected_consistency.png",
        "plots/cross_alignment.png",
        "plots/accuracy/accuracy_bars.png",
        "plots/pca/pca_vanilla.png",
        "plots/pca_3d/pca_step-4.png",
    ):
        assert (root / figure).stat().st_size > 0, figure
    rows = pl.read_csv(finished_run / "results" / "summary.csv").filter(pl.col("family") == "probing")
    assert set(rows["experiment"]) == {f"tiny_probe.{scale}" for scale in scales}
    assert "sign_corrected_consistency/unit=distance/layer=1" in set(rows["metric"])


def test_foveated_family(finished_run):
    root = finished_run / "results" / "foveated"
    winner = json.loads((root / "sweeps" / "freeze" / "decision.json").read_text())["winner"]
    skipped, kept = ("lr", "LR3") if winner == "F1" else ("lr_alt", "LR2")
    dropped = {"lr": "LR2", "lr_alt": "LR3"}[skipped]
    assert (
        (root / "sweeps" / skipped / "table.md")
        .read_text()
        .startswith(f"Skipped: sweep {skipped} skipped: {winner} won")
    )
    assert not (root / dropped).exists() and (root / kept / "eval.json").is_file()
    f3 = json.loads((root / "F3" / "eval.json").read_text())
    assert (
        list(f3["modes"]) == ["coarse_only", "coarse_fine", "autoregressive", "blank_frames"]
        and f3["visual_tokens_per_frame"] == 1
    )
    b1 = json.loads((root / "B1" / "eval.json").read_text())
    assert list(b1["modes"]) == ["multi_token", "blank_frames"] and b1["visual_tokens_per_frame"] == 4
    assert [json.loads(line)["step"] for line in (root / "F3" / "evals.jsonl").read_text().splitlines()] == [0, 1, 2]
    assert sorted(p.name for p in (root / "F3" / "attention").glob("*.npz")) == [
        "frames.npz",
        "step-0.npz",
        "step-1.npz",
        "step-2.npz",
    ]
    for figure in ("loss_ratio", "attention_entropy", "token_frontier", "three_modes", "attention_heatmaps"):
        assert (root / "plots" / f"{figure}.png").stat().st_size > 0, figure
    assert (root / "sweeps" / "freeze" / "curves.png").stat().st_size > 0
    table = pl.read_csv(root / "sweeps" / "architecture" / "table.csv")
    assert table["run"].to_list() == ["F3", "A6", "B1"]
    rows = pl.read_csv(finished_run / "results" / "summary.csv").filter(pl.col("family") == "foveated")
    assert "accuracy/mode=autoregressive" in set(rows.filter(pl.col("experiment") == "F3")["metric"])
    assert rows.filter(pl.col("experiment") == f"sweep.{skipped}")["metric"].to_list() == ["skipped"]
    assert dropped not in set(rows["experiment"])


def test_second_run_schedules_nothing(finished_run):
    run = snakemake(finished_run)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Nothing to be done" in run.stdout + run.stderr


def test_editing_one_limit_replans_only_that_dataset(finished_run, tmp_path):
    config = reduced_config()
    config["datasets"]["vqav2_val"]["limit"] = 6
    (finished_run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    try:
        run = snakemake(finished_run, "results/summary.csv", "--dry-run")
    finally:
        (finished_run / "config.yaml").write_text(yaml.safe_dump(reduced_config(), sort_keys=False))
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = sorted(planned_jobs(run.stdout + run.stderr))
    assert jobs == sorted(
        [
            ("cache_vqav2", "dataset=vqav2_val"),
            ("blank_image_control", "dataset=vqav2_val"),
            ("infer_vqa", "experiment=guide_vqav2"),
            ("infer_vqa", "experiment=guide_vqav2.blank_image"),
            ("evaluate_vqa", "experiment=guide_vqav2.blank_image"),
            ("infer_vqa", "experiment=guide_vqav2_two_pass"),
            ("infer_vqa", "experiment=llava_vqav2"),
            ("infer_vqa", "experiment=tiny_sft.base.vqav2_val"),
            ("infer_vqa", "experiment=tiny_sft.vqav2_val"),
            ("evaluate_vqa", "experiment=guide_vqav2"),
            ("evaluate_vqa", "experiment=guide_vqav2_two_pass"),
            ("evaluate_vqa", "experiment=llava_vqav2"),
            ("evaluate_vqa", "experiment=tiny_sft.base.vqav2_val"),
            ("evaluate_vqa", "experiment=tiny_sft.vqav2_val"),
            ("summary", ""),
            # the guided-pruning experiments on vqav2_val, and the comparison of their guides
            ("guided_decode", "experiment=tiny_guided, method=guided"),
            ("baseline_decode", "experiment=tiny_guided, method=fastv"),
            ("baseline_decode", "experiment=tiny_guided, method=random"),
            ("guided_decode", "experiment=tiny_guided_cot, method=guided"),
            *[
                ("evaluate_pruned", f"experiment=tiny_guided, method={method}, answers={answers}")
                for method in ("guided", "fastv", "random")
                for answers in ("keep-1", "keep-0.5")
            ],
            ("evaluate_pruned", "experiment=tiny_guided, method=guided, answers=guide"),
            *[
                ("evaluate_pruned", f"experiment=tiny_guided_cot, method=guided, answers={answers}")
                for answers in ("keep-1", "keep-0.5", "guide")
            ],
            ("compare_attention", "comparison=tiny_cot_attention"),
            # their tables and figures, which the summary waits for
            *[
                (rule, f"experiment={experiment}")
                for experiment in ("tiny_guided", "tiny_guided_cot", "qwen2_5_vl_guided", "qwen3_vl_guided")
                for rule in ("retention_table", "early_exit")
            ],
            # one inference experiment per other model family, and the two Qwen pairs' guided runs
            *[(rule, f"experiment={family}_vqav2") for family in FAMILIES for rule in ("infer_vqa", "evaluate_vqa")],
            *[
                row
                for pair in ("qwen2_5_vl_guided", "qwen3_vl_guided")
                for row in [
                    ("guided_decode", f"experiment={pair}, method=guided"),
                    *[
                        ("evaluate_pruned", f"experiment={pair}, method=guided, answers={answers}")
                        for answers in ("keep-1", "keep-0.5", "guide")
                    ],
                ]
            ],
        ]
    )


def rerun(workdir: Path, config: dict, target: str, rule: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run one target again with `rule` forced, after writing `config`."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return subprocess.run(
        [SNAKEMAKE, "--cores", "2", target, "--forcerun", rule],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, **(env or {})},
    )


def test_out_of_memory_is_handled_inside_the_real_jobs(finished_run, tmp_path):
    """infer_vqa and train_model, run by Snakemake with batches above a size 'out of memory',
    halve their batch inside the job and give what a run configured at the smaller batch gives;
    a non-memory error fails once, with its message in the log (and every attempt kept)."""
    workdir = tmp_path / "oom"
    shutil.copytree(finished_run, workdir, symlinks=True)
    inject = {"VLMFLOW_INJECT_OOM_ABOVE": "2"}
    predictions, log = "results/vqa/guide_vqav2/predictions.jsonl", "logs/vqa/guide_vqav2/infer.log"

    config = reduced_config()  # batch 4 (vqa.defaults)
    run = rerun(workdir, config, predictions, "infer_vqa", inject)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "out of memory: batch size halved to 2" in (workdir / log).read_text()
    assert "Trying to restart" not in run.stderr
    halved = (workdir / predictions).read_bytes()
    config["vqa"]["experiments"]["guide_vqav2"]["batch_size"] = 2
    run = rerun(workdir, config, predictions, "infer_vqa")
    assert run.returncode == 0, run.stderr[-3000:]
    assert (workdir / predictions).read_bytes() == halved

    step, train_log = "results/finetune/tiny_sft/step-2", "logs/finetune/tiny_sft/step-2.log"
    config = reduced_config()  # micro-batch 2, no accumulation
    run = rerun(workdir, config, step, "train_model", {"VLMFLOW_INJECT_OOM_ABOVE": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "out of memory; micro-batch 1 x 2 accumulation from now on" in (workdir / train_log).read_text()
    losses = [json.loads(line)["loss"] for line in (workdir / step / "train_log.jsonl").read_text().splitlines()]
    shutil.rmtree(workdir / "results/finetune/tiny_sft/run")  # else the same-fingerprint state is restored
    config["finetune"]["experiments"]["tiny_sft"] |= {"batch_size": 1, "grad_accum": 2}
    run = rerun(workdir, config, step, "train_model")
    assert run.returncode == 0, run.stderr[-3000:]
    expected = [json.loads(line)["loss"] for line in (workdir / step / "train_log.jsonl").read_text().splitlines()]
    assert losses == pytest.approx(expected, abs=1e-6) and len(losses) == 2

    image = workdir / json.loads((workdir / "results/cache/vqav2_val.jsonl").read_text().splitlines()[0])["image"]
    image.write_bytes(image.read_bytes()[:200])  # damaged after caching
    attempts = workdir / (log + ".attempts")
    before = attempts.read_text().count("attempt started")
    run = rerun(workdir, reduced_config(), predictions, "infer_vqa")
    assert run.returncode != 0 and "Trying to restart" not in run.stderr, "a real error fails once"
    assert image.name in (workdir / log).read_text()
    assert attempts.read_text().count("attempt started") == before + 1
    assert not (workdir / predictions).exists()


def test_two_runs_from_scratch_agree(finished_run, tmp_path_factory):
    """The reduced default, run again from scratch in another folder, gives the same value for
    every row of results/summary.csv (timings aside)."""
    workdir = copy_workflow(tmp_path_factory.mktemp("again"), reduced_config())
    run = snakemake(workdir)
    assert run.returncode == 0, run.stderr[-5000:]
    timing = pl.col("metric").str.contains("samples_per_s|generation_time|seconds")
    key = ["experiment", "family", "model", "dataset", "metric"]
    first = pl.read_csv(finished_run / "results" / "summary.csv").filter(~timing)
    second = pl.read_csv(workdir / "results" / "summary.csv").filter(~timing)
    assert first.height == second.height > 500
    assert first.select(key).sort(key, nulls_last=True).equals(second.select(key).sort(key, nulls_last=True))
    joined = first.join(second, on=key, how="inner", suffix="_again", nulls_equal=True)
    assert joined.height == first.height, "one row per key"
    same = pl.col("n").eq_missing(pl.col("n_again")) & pl.col("value").eq_missing(pl.col("value_again"))
    differ = joined.filter(~same)
    assert differ.height == 0, differ.select(*key, "value", "value_again").head(10)


def test_config_errors_name_the_key(tmp_path):
    config = reduced_config()
    config["datasets"]["vqav2_val"]["limt"] = 3
    run = snakemake(copy_workflow(tmp_path / "typo", config), "-n")
    assert run.returncode != 0 and "limt" in run.stdout + run.stderr

    config = reduced_config()
    config["vqa"]["experiments"]["guide_vqav2"]["model"] = "gide"
    run = snakemake(copy_workflow(tmp_path / "ref", config), "-n")
    assert run.returncode != 0
    assert "vqa.experiments.guide_vqav2.model: unknown model 'gide'" in run.stdout + run.stderr

    config = reduced_config()
    config["guided"]["experiments"]["tiny_guided"]["dataset"] = "vqav2_vall"  # was a bare KeyError
    run = snakemake(copy_workflow(tmp_path / "guided", config), "-n")
    assert run.returncode != 0
    assert "guided.experiments.tiny_guided.dataset: unknown dataset 'vqav2_vall'" in run.stdout + run.stderr

    config = reduced_config()
    config["finetune"]["experiments"]["tiny_sft"]["scales"] = [2, 8]  # steps: 4
    run = snakemake(copy_workflow(tmp_path / "scales", config), "-n")
    assert run.returncode != 0 and "finetune.experiments.tiny_sft.scales: [8] past" in run.stdout + run.stderr

    config = reduced_config()
    config["vqa"]["experiments"]["guide_vqav2"]["gpus"] = 2  # and no device_map to spread the model
    run = snakemake(copy_workflow(tmp_path / "gpus", config), "-n")
    assert run.returncode != 0
    assert "vqa.experiments.guide_vqav2: gpus: 2 without device_map" in run.stdout + run.stderr

    config = reduced_config()
    config["probing"]["experiments"]["tiny_probe"]["finetune"] = "tiny_sfft"
    run = snakemake(copy_workflow(tmp_path / "probe", config), "-n")
    assert run.returncode != 0
    assert (
        "probing.experiments.tiny_probe.finetune: unknown fine-tuning experiment 'tiny_sfft'" in run.stdout + run.stderr
    )

    config = reduced_config()
    config["pretrain"]["models"]["tiny_zoo_wide"]["vision_from"] = "tiny_zo"
    run = snakemake(copy_workflow(tmp_path / "tower", config), "-n")
    assert run.returncode != 0
    assert (
        "pretrain.models.tiny_zoo_wide.vision_from: 'tiny_zo' is neither a pretrained model nor a checkpoint folder"
        in run.stdout + run.stderr
    )

    config = reduced_config()
    config["pretrain"]["models"]["tiny_zoo_more"]["build"] = config["pretrain"]["models"]["tiny_zoo"]["build"]
    run = snakemake(copy_workflow(tmp_path / "stage", config), "-n")
    assert run.returncode != 0
    assert (
        "pretrain.models.tiny_zoo_more: init_from continues a pretrained model, so it takes no build or vision_from"
        in run.stdout + run.stderr
    )


def planned_field(output: str, rule: str, field: str, wildcards: str = "", default: int = 0) -> int:
    """An integer field (threads, priority) of the one planned job of `rule` whose block names
    `wildcards` (end them with a newline to match the whole line); a dry run leaves out a field at
    its default."""
    (block,) = [b for b in job_blocks(output) if b.startswith(f"rule {rule}:") and wildcards in b]
    found = re.search(rf"^\s+{field}: (\d+)$", block, flags=re.MULTILINE)
    return int(found.group(1)) if found else default


def test_conditioning_jobs_take_their_threads(tmp_path):
    """`threads` of conditioning.defaults, an experiment and the analysis reach their jobs (2 unset)."""
    config = reduced_config()
    config["conditioning"]["defaults"]["threads"] = 3
    config["conditioning"]["experiments"]["vl_double_conditioning"]["threads"] = 1
    config["conditioning"]["analysis"]["threads"] = 4
    dry = snakemake(copy_workflow(tmp_path / "threads", config), "-n", "--cores", "4")
    assert dry.returncode == 0, dry.stderr[-3000:]

    def threads(rule: str, wildcards: str = "") -> int:
        return planned_field(dry.stdout, rule, "threads", wildcards, default=1)

    assert threads("generate_conditioning", "experiment=vl_only_vs_qwen3") == 3
    assert threads("generate_conditioning", "experiment=vl_double_conditioning") == 1
    assert threads("conditioning_dimensions") == 4
    del config["conditioning"]["defaults"]["threads"], config["conditioning"]["analysis"]["threads"]
    dry = snakemake(copy_workflow(tmp_path / "unset", config), "-n", "--cores", "4")
    assert threads("generate_conditioning", "experiment=vl_only_vs_qwen3") == threads("conditioning_dimensions") == 2


def test_data_and_gating_training_start_first(tmp_path):
    """Priorities of a planned run: synthetic data, caches and built models first, then training that
    other jobs wait on (fine-tuning; the foveated runs of a sweep that decides another), the rest last."""
    dry = snakemake(copy_workflow(tmp_path / "flow", reduced_config()), "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    for rule, wildcards in [("synth_vqav2", "split=val\n"), ("cache_vqav2", "dataset=vqav2_val\n"),
                            ("build_foveated_model", "")]:  # fmt: skip
        assert planned_field(dry.stdout, rule, "priority", wildcards) == 20, rule
    assert planned_field(dry.stdout, "train_model", "priority", "experiment=tiny_sft, step=4\n") == 10
    assert planned_field(dry.stdout, "train_foveated", "priority", "run=F1\n") == 10  # freeze decides lr, lr_alt
    assert planned_field(dry.stdout, "train_foveated", "priority", "run=B1\n") == 0
    assert planned_field(dry.stdout, "infer_vqa", "priority", "experiment=guide_vqav2\n") == 0


def folder_bytes(folder: Path) -> dict[Path, bytes]:
    """Every file under `folder` but Snakemake's directory-output markers."""
    return {
        p.relative_to(folder): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and p.name != ".snakemake_timestamp"
    }


def test_several_object_scenes_are_written_by_their_rules(tmp_path):
    """`vqav2_several` sizes make the `several` scenes, for the default's data and the pretraining
    corpus, each with its seed: the generator's own bytes."""
    config = reduced_config()
    config["synthetic"]["sizes"]["vqav2_several"] = {"train": 2, "val": 3}
    config["pretrain"]["synthetic"]["sizes"]["vqav2_several"] = 2
    workdir = copy_workflow(tmp_path / "flow", config)
    targets = {
        "resources/raw/vqav2_several": ("val", 3, 0),
        "resources/raw/pretrain/vqav2_several": ("train", 2, 1),
    }
    run = snakemake(
        workdir,
        *(f"{folder}/v2_OpenEnded_mscoco_{split}2014_questions.json" for folder, (split, _, _) in targets.items()),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    for folder, (split, n, seed) in targets.items():
        write_vqav2(tmp_path / "direct" / folder, split, n, seed, image_size=112, scene="several")
        assert folder_bytes(workdir / folder) == folder_bytes(tmp_path / "direct" / folder), folder


def test_lint_is_clean():
    run = subprocess.run([SNAKEMAKE, "--lint"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def test_inspection_commands(finished_run):
    """Dry run, job graph, rule graph and the per-file summary all work on a finished run."""
    dry = snakemake(finished_run, "-n")
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr
    dag = snakemake(finished_run, "results/summary.csv", "--dag")  # --dag takes an optional format
    assert dag.returncode == 0 and dag.stdout.lstrip().startswith("digraph") and "train_model" in dag.stdout
    rulegraph = snakemake(finished_run, "--rulegraph")
    assert rulegraph.returncode == 0 and "ablation_table" in rulegraph.stdout
    summary = snakemake(finished_run, "--summary")
    assert summary.returncode == 0
    header, *rows = [line.split("\t") for line in summary.stdout.splitlines() if "\t" in line]
    assert header[:3] == ["output_file", "date", "rule"]
    assert any(row[0] == "results/summary.csv" and row[2] == "summary" for row in rows)


def test_report_renders_every_family(finished_run):
    """snakemake --report gathers the flagged figures and tables; headless Chromium renders it
    with one category per family (skipped, with the reason, where Chromium is missing and cannot be
    installed)."""
    report = finished_run / "results" / "report.html"
    run = snakemake(finished_run, "--report", str(report))
    assert run.returncode == 0 and report.stat().st_size > 100_000, run.stderr[-3000:]
    reason = system_packages.install(["chromium"], ["chromium"])  # Debian's, with apt where it is missing
    if reason:
        pytest.skip(f"report not rendered: {reason}")
    chromium = shutil.which("chromium")
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=15000",
            "--dump-dom",
            report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    body = dom[dom.index("<body") :]
    for category in (
        "Fine-tuning",
        "VQA evaluation",
        "Answer modes and decoding",
        "Guided token pruning",
        "Hidden-state probing",
        "Foveated VLM",
        "Summary",
    ):
        assert f">{category}<" in body, category  # rendered as a navigation entry
    for figure in (
        "loss.png",
        "per_type.csv",
        "kvasir_decoding.csv",
        "accuracy_vs_retention.png",
        "ablation.png",
        "token_frontier.png",
        "curves.png",
        "summary.csv",
    ):
        assert figure in dom, figure


def test_conditioning_family(finished_run):
    root = finished_run / "results" / "conditioning"
    for experiment, outputs in reduced_config()["conditioning"]["experiments"].items():
        metadata = json.loads((root / experiment / "metadata.json").read_text())
        assert [r["name"] for r in metadata["results"]] == list(outputs["outputs"])
        for entry in metadata["results"]:
            for key in (
                "vl_shape",
                "vl_std",
                "token_selection",
                "normalization_mode",
                "blended_std",
                "generation_time",
                "alpha",
                "hidden_layer",
            ):
                assert key in entry, (experiment, entry["name"], key)
            assert json.loads((root / experiment / f"{entry['name']}.json").read_text())["name"] == entry["name"]
            assert (root / experiment / entry["image"]).stat().st_size > 0
        assert (root / experiment / "comparison_grid.png").stat().st_size > 0
    first = {r["name"]: r for r in json.loads((root / "vl_only_vs_qwen3" / "metadata.json").read_text())["results"]}
    assert first["pure_qwen3_4b"]["pixel_distance_to_reference"] == 0.0 and first["pure_qwen3_4b"]["vl_shape"] is None
    # global normalisation matches the reference encoder's std on the prompt
    assert first["pure_vl_text_tokens"]["vl_std"] == pytest.approx(
        first["pure_vl_text_tokens"]["reference_std"], rel=1e-3
    )
    double = {
        r["name"]: r for r in json.loads((root / "vl_double_conditioning" / "metadata.json").read_text())["results"]
    }
    assert double["single_image_tokens"]["vl_shape"] == [4, 32]  # 64 px: 4x4 patches merged 2x2
    assert double["dual_30_image_70_text"]["spec"]["mix_with"]["hidden_layer"] == -1
    layers = pl.read_csv(root / "dimensions" / "layers.csv")
    assert layers.height == 4 * 3 and set(layers["token_type"]) == {"full", "image_only", "text_only"}
    assert pl.read_csv(root / "dimensions" / "outliers.csv").height == 4 * 3 * 3
    assert (root / "dimensions" / "dimensions.png").stat().st_size > 0
    rows = pl.read_csv(finished_run / "results" / "summary.csv").filter(pl.col("family") == "conditioning")
    assert "pure_vl_text_tokens/cosine_to_reference" in set(
        rows.filter(pl.col("experiment") == "conditioning.vl_only_vs_qwen3")["metric"]
    )
    assert "std_correlation/token_type=text_only/layer=-2" in set(rows["metric"])
    # every picture is measured against its caption and the VLM's picture
    assert {"colour_follows_caption", "colour_follows_image"} <= first["pure_vl_text_tokens"].keys()
    reference = json.loads((root / "vl_only_vs_qwen3" / "metadata.json").read_text())["reference_following"]
    assert reference["named_colour"] == "red" and reference["image_colour"] == "blue"
    following = root / "caption_following"
    pictures = [json.loads(line) for line in (following / "pictures.jsonl").read_text().splitlines()]
    assert [p["question_id"] for p in pictures] == [f"{r}/{i}" for r in ("reference", "text_tokens") for i in range(4)]
    assert all((following / p["picture"]).stat().st_size > 0 for p in pictures)
    rates = pl.read_csv(following / "rates.csv")
    assert rates["recipe"].to_list() == ["reference", "text_tokens"] and rates["n"].to_list() == [4, 4]
    assert (following / "caption_following.png").stat().st_size > 0
    summary = rows.filter(pl.col("experiment") == "conditioning.caption_following")
    assert set(summary["metric"]) == {
        f"{recipe}/{rate}"
        for recipe in ("reference", "text_tokens")
        for rate in ("colour_follows_caption", "side_follows_caption", "colour_follows_image")
    }


def write_png_questions(folder: Path) -> Path:
    """A JSONL dataset of its own: PNG images of one coloured square, a question each."""
    folder.mkdir(parents=True)
    lines = []
    for i, (colour, rgb) in enumerate([("red", (220, 30, 30)), ("blue", (30, 60, 220))] * 4):
        image = Image.new("RGB", (224, 224), (255, 255, 255))
        image.paste(rgb, (60 + 8 * i, 60, 150 + 8 * i, 150))
        image.save(folder / f"square_{i}.png")
        lines.append({"question": "What color is the square?", "answers": [colour], "image": f"square_{i}.png"})
    questions = folder / "questions.jsonl"
    questions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return questions


def test_an_own_config_runs_only_what_it_declares(tmp_path):
    """A researcher's config (a checkpoint folder, a JSONL dataset with PNG images, one fine-tuning
    experiment, no vqa section) run the documented way replaces the embedded default."""
    workdir = copy_workflow(tmp_path / "flow", yaml.safe_load((REPO / "config.yaml").read_text()))
    shutil.copytree(REPO / "resources" / "zoo" / "qwen2vl_guide" / "samples-0", workdir / "checkpoints" / "guide")
    questions = write_png_questions(workdir / "data" / "squares")
    own = {
        "models": {"guide": {"path": "checkpoints/guide"}},
        "datasets": {"squares": {"format": "jsonl", "jsonl": str(questions.relative_to(workdir))}},
        "finetune": {
            "experiments": {
                "squares_lora": {
                    "model": "guide",
                    "datasets": ["squares"],
                    "eval": ["squares"],
                    "steps": 2,
                    "batch_size": 2,
                    "threads": 1,
                    "sanity": {"enabled": False},
                }
            }
        },
    }
    (workdir / "my.yaml").write_text(yaml.safe_dump(own, sort_keys=False))
    command = ["results/summary.csv", "--configfile", "my.yaml", "--replace-workflow-config"]
    dry = snakemake(workdir, *command, "--dry-run")
    assert dry.returncode == 0, dry.stderr[-3000:]
    planned = {rule for rule, _ in planned_jobs(dry.stdout)}
    assert planned == {"cache_jsonl", "train_model", "plot_training", "label_check", "infer_vqa", "evaluate_vqa",
                       "summary"}, planned  # fmt: skip
    run = snakemake(workdir, *command)
    assert run.returncode == 0, run.stderr[-5000:]
    assert "extends the embedded default" not in run.stderr
    summary = pl.read_csv(workdir / "results" / "summary.csv")
    assert set(summary["experiment"]) == {"squares_lora"} and set(summary["family"]) == {"finetune"}
    assert set(summary["stage"]) == {"base", "trained", "step-2"}
    assert not (workdir / "resources" / "raw").exists()  # nothing synthetic was made
