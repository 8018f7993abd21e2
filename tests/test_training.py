"""Fine-tuning: LoRA targets, resume after a real kill, chained scales, the sanity gate, export."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import make_records
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText

import vlmflow.finetune.trainer as trainer_module
from vlmflow.architectures.registry import architecture
from vlmflow.core.checkpoint import sample_order
from vlmflow.core.gpu_memory import INJECT_OOM_ABOVE
from vlmflow.core.models import load_vlm
from vlmflow.core.settings import GenerationSettings, TrainSettings
from vlmflow.finetune.examples import collate
from vlmflow.finetune.positions import batch_positions
from vlmflow.finetune.sanity import SanityCheckFailed, sanity_overfit
from vlmflow.finetune.trainer import component, prepare_model, train_stage

GENERATION = GenerationSettings()
LORA = TrainSettings(steps=6, batch_size=2, lr=1e-2, warmup_steps=1, checkpoint_every=2, lora_r=4, lora_alpha=8)


def test_component_names():
    assert component("model.visual.merger.mlp.0.weight") == "projector"
    assert component("model.visual.deepstack_merger_list.0.linear_fc1.weight") == "projector"  # Qwen3-VL
    assert component("model.multi_modal_projector.linear_1.weight") == "projector"
    assert component("model.visual.blocks.0.attn.qkv.weight") == "vision"
    assert component("model.vision_tower.encoder.layers.0.fc1.weight") == "vision"
    assert component("model.language_model.layers.0.self_attn.q_proj.lora_A.default.weight") == "language"


@pytest.mark.parametrize("family", ["qwen2_vl", "llava"])
def test_lora_trains_only_the_language_model_by_default(family, tiny_checkpoints):
    model, _ = load_vlm(tiny_checkpoints[family], device="cpu")
    model = prepare_model(model, LORA)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and component(n) == "language" for n in trainable)

    model, _ = load_vlm(tiny_checkpoints[family], device="cpu")
    model = prepare_model(model, TrainSettings(train_projector=True, train_vision=True, lora_r=4))
    parts = {component(n) for n, p in model.named_parameters() if p.requires_grad}
    assert parts == {"language", "projector", "vision"}


@pytest.mark.parametrize("family", ["qwen2_vl", "llava"])
def test_full_fine_tune_can_keep_the_vision_tower_fixed(family, tiny_checkpoints):
    model, _ = load_vlm(tiny_checkpoints[family], device="cpu")
    model = prepare_model(model, TrainSettings(mode="full", freeze_vision=True))
    frozen = {component(n) for n, p in model.named_parameters() if not p.requires_grad}
    trained = {component(n) for n, p in model.named_parameters() if p.requires_grad}
    assert frozen == {"vision"} and trained == {"language", "projector"}


def test_sample_order_is_a_function_of_position():
    stream = sample_order(5, seed=3, start=0, count=12)
    assert sorted(stream[:5]) == list(range(5)) and sorted(stream[5:10]) == list(range(5))
    assert sample_order(5, seed=3, start=7, count=5) == stream[7:12]


@pytest.fixture
def data(tmp_path):
    return make_records(tmp_path / "images", 8)


def stage(model_path, records, out, run_dir, until, previous=None, settings=LORA, loader_workers=0):
    return train_stage(
        model_path,
        records,
        "digest",
        settings,
        GENERATION,
        until=until,
        out_dir=out,
        run_dir=run_dir,
        previous=previous,
        device="cpu",
        loader_workers=loader_workers,
    )


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=0, atol=1e-6, msg=name)


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import torch
    import vlmflow.finetune.trainer as training
    from vlmflow.core.records import read_records
    from vlmflow.core.settings import GenerationSettings

    torch.use_deterministic_algorithms(True, warn_only=True)
    model, cache, out, run_dir, kill_at = sys.argv[1:6]
    real_step = training.Trainer.train_step

    def step_then_die(self):
        if self.step == int(kill_at):
            os.kill(os.getpid(), signal.SIGKILL)  # preempted right after a checkpoint was written
        return real_step(self)

    training.Trainer.train_step = step_then_die
    settings = training.TrainSettings(steps=6, batch_size=2, lr=1e-2, warmup_steps=1, checkpoint_every=2, lora_r=4, lora_alpha=8)
    training.train_stage(model, read_records(cache), "digest", settings, GenerationSettings(), until=6,
                         out_dir=Path(out), run_dir=Path(run_dir), device="cpu")
    """
)


def test_killed_training_resumes_to_the_same_weights_and_curve(tiny_checkpoints, data, tmp_path):
    torch.use_deterministic_algorithms(True, warn_only=True)
    model = tiny_checkpoints["qwen2_vl"]
    reference = stage(model, data, tmp_path / "ref", tmp_path / "ref-run", until=6)

    from vlmflow.core.io import write_jsonl

    cache = tmp_path / "cache.jsonl"
    write_jsonl(cache, (r.to_json() for r in data))
    out, run_dir = tmp_path / "out", tmp_path / "run"
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, str(model), str(cache), str(out), str(run_dir), "5"],
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not out.exists()
    assert (run_dir / "checkpoint" / "state.json").is_file()

    resumed = stage(model, data, out, run_dir, until=6)
    assert [r["step"] for r in resumed] == [5, 6], "continues after the step-4 checkpoint"
    losses = [r["loss"] for r in reference]
    logged = [__import__("json").loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert logged == pytest.approx(losses, abs=1e-5)
    assert_same_weights(out, tmp_path / "ref")


def test_a_base_model_replaced_at_the_same_path_trains_from_scratch(tiny_checkpoints, data, tmp_path):
    """Issue 19 (2): kill training, rebuild the base model at its path, rerun: the old run's
    checkpoint must not be restored over the new base weights."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    base = tmp_path / "base"
    shutil.copytree(tiny_checkpoints["qwen2_vl"], base)
    stage(base, data, tmp_path / "first", tmp_path / "run", until=4)  # leaves run/checkpoint at step 4
    model = AutoModelForImageTextToText.from_pretrained(base)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.5)
    model.save_pretrained(base)
    rows = stage(base, data, tmp_path / "out", tmp_path / "run", until=6)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6], "a new base starts at step 1"
    stage(base, data, tmp_path / "ref", tmp_path / "ref-run", until=6)
    assert_same_weights(tmp_path / "out", tmp_path / "ref")


def test_out_of_memory_halves_the_micro_batch_with_the_same_samples(tiny_checkpoints, data, tmp_path, monkeypatch):
    """Micro-batches above 1 'do not fit': the run goes on at 1 x 2 accumulation, exactly as a run
    configured that way, and its checkpoints keep the configured run's resume fingerprint."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    model = tiny_checkpoints["qwen2_vl"]
    halved = TrainSettings(**{**LORA.__dict__, "batch_size": 1, "grad_accum": 2})
    reference = stage(model, data, tmp_path / "ref", tmp_path / "ref-run", until=4, settings=halved)
    monkeypatch.setenv(INJECT_OOM_ABOVE, "1")
    rows = stage(model, data, tmp_path / "out", tmp_path / "run", until=4)
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in reference], abs=1e-6)
    assert_same_weights(tmp_path / "out", tmp_path / "ref")
    monkeypatch.delenv(INJECT_OOM_ABOVE)
    resumed = stage(model, data, tmp_path / "out6", tmp_path / "run", until=6)
    assert [r["step"] for r in resumed] == [5, 6], "the configured run resumes the halved run's checkpoint"


def test_loader_workers_train_on_the_same_batches(tiny_checkpoints, data, tmp_path):
    """Micro-batches collated ahead in worker processes: the same curve and weights as in-step
    collation, also across a scale boundary (the next stage plans its batches from its own start)."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    model = tiny_checkpoints["qwen2_vl"]
    settings = TrainSettings(**{**LORA.__dict__, "grad_accum": 2})
    reference = stage(model, data, tmp_path / "ref", tmp_path / "ref-run", until=6, settings=settings)
    stage(model, data, tmp_path / "w2", tmp_path / "run", until=2, settings=settings, loader_workers=2)
    rows = stage(
        model, data, tmp_path / "w6", tmp_path / "run", until=6, previous=tmp_path / "w2", settings=settings,
        loader_workers=2,
    )  # fmt: skip
    assert [r["step"] for r in rows] == [3, 4, 5, 6]
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in reference[2:]], abs=1e-6)
    assert_same_weights(tmp_path / "w6", tmp_path / "ref")


def test_loader_workers_replan_after_the_micro_batch_is_halved(tiny_checkpoints, data, tmp_path, monkeypatch):
    torch.use_deterministic_algorithms(True, warn_only=True)
    model = tiny_checkpoints["qwen2_vl"]
    halved = TrainSettings(**{**LORA.__dict__, "batch_size": 1, "grad_accum": 2})
    reference = stage(model, data, tmp_path / "ref", tmp_path / "ref-run", until=4, settings=halved)
    monkeypatch.setenv(INJECT_OOM_ABOVE, "1")
    rows = stage(model, data, tmp_path / "out", tmp_path / "run", until=4, loader_workers=2)
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in reference], abs=1e-6)
    assert_same_weights(tmp_path / "out", tmp_path / "ref")


def test_scales_chain_to_the_uninterrupted_run(tiny_checkpoints, data, tmp_path):
    torch.use_deterministic_algorithms(True, warn_only=True)
    model = tiny_checkpoints["llava"]
    settings = TrainSettings(**{**LORA.__dict__, "mode": "full", "lr": 1e-3})
    stage(model, data, tmp_path / "straight", tmp_path / "run-a", until=6, settings=settings)
    stage(model, data, tmp_path / "step-2", tmp_path / "run-b", until=2, settings=settings)
    import shutil

    shutil.rmtree(tmp_path / "run-b")  # the next scale must work from the step-2 output alone
    stage(
        model, data, tmp_path / "step-6", tmp_path / "run-b", until=6, previous=tmp_path / "step-2", settings=settings
    )
    assert_same_weights(tmp_path / "step-6", tmp_path / "straight")
    assert len((tmp_path / "step-6" / "train_log.jsonl").read_text().splitlines()) == 6


def test_export_loads_through_auto_classes_with_the_adapter_beside(tiny_checkpoints, data, tmp_path):
    out = tmp_path / "trained"
    stage(tiny_checkpoints["qwen2_vl"], data, out, tmp_path / "run", until=2)
    model = AutoModelForImageTextToText.from_pretrained(out)
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration"
    assert not any("lora" in name for name in weights(out)), "LoRA is merged into the exported weights"
    assert (out / "adapter" / "adapter_config.json").is_file()
    base = weights(tiny_checkpoints["qwen2_vl"])
    changed = [n for n, w in weights(out).items() if not torch.equal(w, base[n])]
    # (on disk Qwen2-VL keeps its original key names: "model.layers.*" is the language model)
    assert changed and not [n for n in changed if "visual" in n or "lm_head" in n or "embed" in n]


def test_sanity_gate_fails_with_a_clear_message(tiny_checkpoints, data, tmp_path):
    with pytest.raises(SanityCheckFailed, match=r"never below the threshold 0\.0001; training was not started"):
        sanity_overfit(
            tiny_checkpoints["qwen2_vl"],
            data,
            LORA,
            GENERATION,
            samples=4,
            steps=3,
            threshold=1e-4,
            log_path=tmp_path / "sanity.jsonl",
            device="cpu",
        )


def test_sanity_gate_passes_when_the_loss_drops(tiny_checkpoints, data, tmp_path):
    full = TrainSettings(mode="full", batch_size=4, lr=1e-2, warmup_steps=0)
    report = sanity_overfit(
        tiny_checkpoints["qwen2_vl"],
        data,
        full,
        GENERATION,
        samples=4,
        steps=30,
        threshold=4.0,
        log_path=tmp_path / "sanity.jsonl",
        device="cpu",
    )
    assert report["passed"] and report["best_loss"] < 4.0 < report["first_loss"]


def test_wandb_mirrors_the_step_log_to_an_offline_run(tiny_checkpoints, data, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"
    train_stage(
        tiny_checkpoints["qwen2_vl"],
        data,
        "digest",
        LORA,
        GENERATION,
        until=2,
        out_dir=tmp_path / "out",
        run_dir=run_dir,
        device="cpu",
        wandb_name="guide_sft",
    )
    runs = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1, "one offline run, nothing sent anywhere"
    payload = runs[0].read_bytes()
    assert b"guide_sft" in payload and b"grad_norm" in payload and b"samples_per_s" in payload


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_batch_positions_are_the_forwards_own(family, family_checkpoints, data, tmp_path, monkeypatch):
    """M-RoPE positions computed with the batch (loader side) equal those the forward builds, and a
    run that hands them to the model trains to the same curve and weights as one that does not;
    ragged questions, so the batches are padded."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    data = [replace(r, question=r.question + " Look closely." * (i % 3)) for i, r in enumerate(data)]
    model, processor = load_vlm(family_checkpoints[family], device="cpu")
    positions = batch_positions(model)
    assert positions is not None, family
    batch = collate(architecture(model), processor, data[:3], GENERATION)
    assert not batch["attention_mask"].all(), "a padded batch"
    own, _ = model.model.get_rope_index(
        batch["input_ids"], batch["mm_token_type_ids"], batch["image_grid_thw"], attention_mask=batch["attention_mask"]
    )
    assert torch.equal(positions(batch), own)
    settings = TrainSettings(**{**LORA.__dict__, "mode": "full"})
    with_positions = stage(
        family_checkpoints[family], data, tmp_path / "with", tmp_path / "run-with", 3, settings=settings
    )
    monkeypatch.setattr(trainer_module, "batch_positions", lambda model: None)
    without = stage(
        family_checkpoints[family], data, tmp_path / "without", tmp_path / "run-without", 3, settings=settings
    )
    assert [r["loss"] for r in with_positions] == [r["loss"] for r in without]
    assert_same_weights(tmp_path / "with", tmp_path / "without")


def test_families_without_batch_positions_are_left_to_their_forward(family_checkpoints):
    model, _ = load_vlm(family_checkpoints["llava"], device="cpu")
    assert batch_positions(model) is None
