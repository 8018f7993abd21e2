"""Models larger than one GPU: the device map planned from max_memory places every layer within the
caps, the free-memory check counts every GPU, and generation, pruning and hidden-state hooks give
the unsplit model's outputs with the model split across devices (the CPU and disk here; a GPU and
the CPU where CUDA is available: `pytest tests/test_big_models.py -k gpu`)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from itertools import chain
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import dispatch_model
from conftest import CORPUS, FAMILY_SPECS, make_records
from transformers import AutoModelForImageTextToText

from vlmflow.architectures.base import UnsupportedStage
from vlmflow.architectures.registry import architecture
from vlmflow.core import gpu_memory, placement
from vlmflow.core.models import load_vlm
from vlmflow.core.placement import (
    bytes_per_device,
    check_plan,
    describe_placement,
    device_map_for,
    empty_model,
    execution_device,
    offload_folder,
    parse_max_memory,
    placed_on,
    plan_device_map,
)
from vlmflow.core.prompts import encode_batch
from vlmflow.core.settings import GenerationSettings, PruningSettings
from vlmflow.guided.importance import ImportanceAccumulator, random_scores
from vlmflow.guided.pruning import generate, language_model, prepare_inputs
from vlmflow.guided.runner import PrunedRunner, load_pair
from vlmflow.guided.shared_vision import SharedVision, shared_vision_reason
from vlmflow.probing.extraction import last_token_states
from vlmflow.vqa.inference import answer_batch
from vlmflow.zoo.build import build_checkpoint

FAMILIES = ("qwen2_vl", "gemma3", "qwen3_vl", "llava")
SETTINGS = GenerationSettings(batch_size=4, max_new_tokens=4)
MIB = 2**20
needs_cuda = pytest.mark.gpu  # deselected where no CUDA device is (tests/conftest.py)


def four_layers(family: str) -> dict:
    """The family's tiny spec with four decoder layers (Qwen2-VL at 112 px: 16 visual tokens)."""
    spec = copy.deepcopy(FAMILY_SPECS[family])
    spec["text"] = {**spec["text"], "num_hidden_layers": 4}
    if family == "qwen2_vl":
        spec["image_size"] = 112
    return spec


# Decoder layers that outweigh the embeddings, so a map's budgets decide where the layers go.
WIDE = {
    **FAMILY_SPECS["qwen2_vl"],
    "text": {
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_hidden_layers": 12,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
    },
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("big_models")
    for family in FAMILIES:
        build_checkpoint(four_layers(family), CORPUS, root / family)
    build_checkpoint(WIDE, CORPUS, root / "wide")
    return {name: root / name for name in (*FAMILIES, "wide")}


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory):
    return make_records(tmp_path_factory.mktemp("big_model_images"), 4)


def sizes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in chain(model.parameters(), model.buffers()))


def layer_devices(model: torch.nn.Module, plan: Mapping[str, int | str]) -> list[int | str]:
    path, layers = architecture(model).decoder_layers(model)
    return [placed_on(plan, f"{path}.{i}") for i in range(len(layers))]


def split_memory(path: Path, dtype: torch.dtype, device: str) -> dict[str, int]:
    """A max_memory that puts the first decoder layers on `device` ("cpu", or GPU "0") and the
    others on the next device (disk after the CPU, the CPU after a GPU)."""
    model = empty_model(path, dtype)
    rest = {} if device == "cpu" else {"cpu": 2**30}
    for share in (0.5, 0.6, 0.4, 0.7, 0.3, 0.8):
        memory = {device: int(sizes(model) * share), **rest}
        if len(set(layer_devices(model, plan_device_map(path, memory, dtype, "sequential")))) == 2:
            return memory
    raise AssertionError(f"{path}: no {device} budget splits the decoder layers")


def special(processor) -> dict:
    return {"eos_token_ids": [processor.tokenizer.eos_token_id], "pad_token_id": processor.tokenizer.pad_token_id}


def assert_same_outputs(whole, split, processor, records, atol: float) -> None:
    """Answers, pruned generation (keep-all, a keep ratio, FastV), the guide's importance and the
    hooked hidden states of `split` equal those of `whole` (both loaded with eager attention)."""
    assert answer_batch(split, processor, records, SETTINGS) == answer_batch(whole, processor, records, SETTINGS)
    ours = prepare_inputs(whole, dict(encode_batch(whole, processor, records, SETTINGS)))
    theirs = prepare_inputs(split, dict(encode_batch(split, processor, records, SETTINGS)))
    torch.testing.assert_close(theirs.embeds.cpu(), ours.embeds.cpu(), atol=atol, rtol=atol)
    scores = random_scores([r.question_id for r in records], ours.visual_counts, seed=0)
    prune_at = len(language_model(whole).layers) // 2
    for keep, fastv in ((1.0, False), (0.5, False), (0.5, True)):
        pruning = {"keep_ratio": keep, "prune_at": prune_at, "scores": scores, "fastv": fastv}
        runs = [
            generate(model, inputs, max_new_tokens=4, **pruning, **special(processor))
            for model, inputs in ((whole, ours), (split, theirs))
        ]
        assert torch.equal(runs[1].tokens.cpu(), runs[0].tokens.cpu()), (keep, fastv)
        torch.testing.assert_close(runs[1].logprobs.cpu(), runs[0].logprobs.cpu(), atol=atol, rtol=atol)
        assert [k.tolist() for k in runs[1].kept or []] == [k.tolist() for k in runs[0].kept or []]
    importance = []
    for model, inputs in ((whole, ours), (split, theirs)):
        accumulator = ImportanceAccumulator(inputs, len(language_model(model).layers))
        generate(model, inputs, max_new_tokens=4, observe=accumulator, **special(processor))
        importance.append(torch.cat(accumulator.scores()))
    torch.testing.assert_close(importance[1], importance[0], atol=atol, rtol=atol)
    inputs = encode_batch(whole, processor, records, SETTINGS)
    states = last_token_states(whole, dict(inputs), None)
    split_states = last_token_states(split, dict(encode_batch(split, processor, records, SETTINGS)), None)
    assert states.keys() == split_states.keys()
    for layer, values in states.items():
        np.testing.assert_allclose(split_states[layer], values, atol=atol, rtol=atol)


def assert_same_rows(ours: list[dict], theirs: list[dict]) -> None:
    """Two pruning runs' rows agree: every answer, and the guide's scores and importance."""
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a["keep"] == b["keep"]
        if "guide" in a:
            assert a["guide"]["prediction"] == b["guide"]["prediction"]
            for key in ("confidence", "consistency"):
                assert a["guide"][key] == pytest.approx(b["guide"][key], abs=1e-5)
            np.testing.assert_allclose(a["importance"], b["importance"], atol=1e-4, rtol=1e-4)


# --- the device map --------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["sequential", "auto"])
@pytest.mark.parametrize("gpus", [2, 3])
def test_the_map_for_n_gpus_places_every_layer_within_max_memory(checkpoints, gpus, strategy):
    model = empty_model(checkpoints["wide"], torch.bfloat16)
    layer = sizes(language_model(model).layers[0])
    cap = sizes(model) // gpus + layer  # the model fits, with room to spare for GPU 0's reserve
    memory = {str(gpu): cap for gpu in range(gpus)} | {"cpu": "1GiB"}
    plan = plan_device_map(checkpoints["wide"], memory, torch.bfloat16, strategy)
    for name, _ in chain(model.named_parameters(), model.named_buffers()):
        assert placed_on(plan, name) in range(gpus), name
    assert all(size <= cap for size in bytes_per_device(model, plan).values())
    devices = layer_devices(model, plan)
    assert set(devices) == set(range(gpus)) and devices == sorted(devices)  # every GPU, in order


def test_the_map_follows_uneven_caps_and_offloads_the_rest_to_the_cpu(checkpoints):
    model = empty_model(checkpoints["wide"], torch.bfloat16)
    layer = sizes(language_model(model).layers[0])
    memory = {"0": 3 * layer, "1": 5 * layer, "cpu": "1GiB"}
    plan = plan_device_map(checkpoints["wide"], memory, torch.bfloat16, "sequential")
    devices = layer_devices(model, plan)
    assert 0 < devices.count(0) < devices.count(1) and "cpu" in devices
    assert devices == [0] * devices.count(0) + [1] * devices.count(1) + ["cpu"] * devices.count("cpu")
    used = bytes_per_device(model, plan)
    assert used[0] <= 3 * layer and used[1] <= 5 * layer


def test_a_map_the_job_cannot_follow_fails_naming_checkpoint_and_max_memory(checkpoints):
    path = checkpoints["wide"]
    model = empty_model(path, torch.bfloat16)
    cap = sizes(model) // 2
    three = {"0": cap, "1": cap, "2": cap}
    with pytest.raises(ValueError, match=r"GPU 2 \(max_memory .*'2'.*this job sees 2 GPU") as err:
        check_plan(path, plan_device_map(path, three, torch.bfloat16, "sequential"), three, 2, None)
    assert str(path) in str(err.value)
    small = {"0": cap}
    with pytest.raises(ValueError, match="would go to disk.*disk_offload: true"):
        check_plan(path, plan_device_map(path, small, torch.bfloat16, "sequential"), small, 1, None)
    check_plan(path, plan_device_map(path, small, torch.bfloat16, "sequential"), small, 1, "offload")
    cpu_only = {"cpu": "1GiB"}
    with pytest.raises(ValueError, match="places nothing on the job's 1 GPU"):
        check_plan(path, plan_device_map(path, cpu_only, torch.bfloat16, "sequential"), cpu_only, 1, None)
    with pytest.raises(ValueError, match="device_map 'everywhere'"):
        plan_device_map(path, None, torch.bfloat16, "everywhere")


def test_max_memory_takes_gpu_ids_and_sizes(checkpoints):
    assert parse_max_memory({"0": "1GiB", 1: 512, "cpu": "2MB"}) == {0: 2**30, 1: 512, "cpu": 2_000_000}
    assert parse_max_memory(None) is None
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        parse_max_memory({"gpu0": "1GiB"})
    with pytest.raises(ValueError, match="'lots' is not a size"):
        parse_max_memory({"0": "lots"})
    with pytest.raises(ValueError, match="spread a model by a device_map"):
        load_vlm(checkpoints["wide"], device="cpu", max_memory={"cpu": "1GiB"})
    with pytest.raises(ValueError, match=r"names GPU 0, but this job sees 0 GPU"):
        load_vlm(checkpoints["wide"], device="cpu", device_map="auto", max_memory={"0": "1GiB"})


def test_a_model_without_no_split_modules_is_refused(checkpoints, monkeypatch):
    def unsplittable(*args, **kwargs):
        model = empty_model(*args, **kwargs)
        model._no_split_modules = set()
        return model

    monkeypatch.setattr(placement, "empty_model", unsplittable)
    with pytest.raises(UnsupportedStage, match="'qwen2_vl' does not support stage 'device_map'"):
        plan_device_map(checkpoints["wide"], {"0": "1GiB"})


def test_the_offload_folder_lives_beside_the_output_for_the_job_only(tmp_path):
    output = tmp_path / "results" / "rows.jsonl"
    stale = output.with_name(".rows.jsonl.offload")
    stale.mkdir(parents=True)
    (stale / "left.safetensors").write_bytes(b"x")  # from a killed run
    with offload_folder(True, output) as folder:
        assert folder == stale and folder.is_dir() and not any(folder.iterdir())
    assert not folder.exists()
    with offload_folder(False, output) as folder:
        assert folder is None


# --- the free-memory check -------------------------------------------------------------------


@pytest.fixture
def two_gpus(monkeypatch):
    """Two 80000 MiB GPUs with 10000 MiB free each, a stray process holding the rest."""
    free = {0: 10_000 * MIB, 1: 10_000 * MIB}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(free))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (free[device], 80_000 * MIB))
    monkeypatch.setattr(gpu_memory, "gpu_processes", lambda: ["4242, python old.py, 70000 MiB"])
    return free


def test_the_check_counts_the_free_memory_of_every_gpu(two_gpus):
    gpu_memory.check_free_memory_across(15_000)  # neither GPU alone holds it; both do
    with pytest.raises(gpu_memory.InsufficientGpuMemory, match="20000 MiB free together.*30000 MiB") as err:
        gpu_memory.check_free_memory_across(30_000)
    for line in ("GPU 0: 10000 MiB free of 80000 MiB", "GPU 1: 10000 MiB free of 80000 MiB", "4242, python old.py"):
        assert line in str(err.value)


def test_each_gpu_must_have_its_max_memory_free(two_gpus):
    gpu_memory.check_free_memory_across(30_000, {0: 8_000, 1: 9_000})
    with pytest.raises(gpu_memory.InsufficientGpuMemory, match="GPU 1 has less free memory than its") as err:
        gpu_memory.check_free_memory_across(1, {0: 8_000, 1: 12_000})
    assert "GPU 1: 10000 MiB free of 80000 MiB (max_memory 12000 MiB)" in str(err.value)


def test_a_device_mapped_load_checks_then_plans_for_the_jobs_gpus(checkpoints, two_gpus):
    path, cuda = checkpoints["wide"], torch.device("cuda")
    plan = device_map_for(path, "auto", {"0": "5MiB", "1": "5MiB"}, None, cuda, torch.bfloat16)
    assert set(plan.values()) == {0, 1}
    two_gpus[1] = 1 * MIB  # a stray process on GPU 1
    with pytest.raises(gpu_memory.InsufficientGpuMemory, match="GPU 1 has less free memory"):
        device_map_for(path, "auto", {"0": "5MiB", "1": "5MiB"}, None, cuda, torch.bfloat16)
    two_gpus[0] = two_gpus[1] = MIB // 4  # less than the weights, together
    with pytest.raises(gpu_memory.InsufficientGpuMemory, match="free together"):
        device_map_for(path, "auto", None, None, cuda, torch.bfloat16)
    with pytest.raises(ValueError, match="names GPU 0, 2, but this job sees 2 GPU"):
        device_map_for(path, "auto", {"0": "5MiB", "2": "5MiB"}, None, cuda, torch.bfloat16)


# --- split across the CPU and disk -----------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_a_model_split_across_cpu_and_disk_gives_the_same_outputs(checkpoints, records, family, tmp_path):
    path = checkpoints[family]
    whole, processor = load_vlm(path, device="cpu", attn_implementation="eager")
    memory = split_memory(path, torch.float32, "cpu")
    split, _ = load_vlm(
        path,
        device="cpu",
        device_map="sequential",
        max_memory=memory,
        offload_folder=tmp_path,
        attn_implementation="eager",
    )
    assert set(layer_devices(split, split.hf_device_map)) == {"cpu", "disk"}
    assert describe_placement(split).startswith("device map: cpu ")
    assert execution_device(split.get_input_embeddings()) == torch.device("cpu")
    assert_same_outputs(whole, split, processor, records, atol=1e-5)


@pytest.mark.parametrize("method", ["guided", "fastv", "random"])
@pytest.mark.parametrize("family", ["qwen2_vl", "gemma3"])
def test_pruning_runs_give_the_same_rows_with_the_decode_model_on_disk(checkpoints, records, family, method, tmp_path):
    path = checkpoints[family]
    settings = PruningSettings(method=method, keep_ratios=(1.0, 0.5), prune_layer=0.5)
    whole = PrunedRunner(load_pair(path, path, settings, device="cpu"), SETTINGS, settings)
    memory = split_memory(path, torch.float32, "cpu")
    pair = load_pair(path, path, settings, "cpu", device_map="sequential", max_memory=memory, offload_folder=tmp_path)
    assert "disk" in pair.decode.hf_device_map.values()
    assert pair.shared_vision == whole.pair.shared_vision == (method == "guided")
    assert_same_rows(PrunedRunner(pair, SETTINGS, settings).answer(records), whole.answer(records))


def test_shared_vision_replays_into_blocks_on_disk_and_gives_them_back(checkpoints, records, tmp_path):
    path = checkpoints["qwen2_vl"]
    whole, processor = load_vlm(path, device="cpu")
    tower = {
        f"model.visual.{name}": "disk" if name == "blocks" else "cpu" for name, _ in whole.model.visual.named_children()
    }
    plan = {**tower, "model.language_model": "cpu", "lm_head": "cpu"}
    split = AutoModelForImageTextToText.from_pretrained(path, device_map=plan, offload_folder=tmp_path).eval()
    assert shared_vision_reason(whole, processor, split, processor) is None  # weights read back from disk
    inputs = dict(encode_batch(whole, processor, records, SETTINGS))
    blocks = architecture(split).vision_blocks(split)
    hooked = [vars(block)["forward"] for block in blocks]  # accelerate's forward, which moves inputs
    shared = SharedVision()
    own = prepare_inputs(whole, inputs, shared)
    replayed = prepare_inputs(split, inputs, shared)
    assert all(vars(block).get("forward") is forward for block, forward in zip(blocks, hooked))
    after = prepare_inputs(split, inputs)
    for language in (replayed, after):
        torch.testing.assert_close(language.embeds, own.embeds)


# --- split across a GPU and the CPU (CUDA only) ----------------------------------------------


def alternating_map(model: torch.nn.Module) -> dict[str, int | str]:
    """GPU 0 and the CPU by turns over the model's parts, down to single decoder layers (a tied
    output head stays with the input embeddings)."""
    layers_path, layers = architecture(model).decoder_layers(model)

    def parts(prefix: str, module: torch.nn.Module) -> list[str]:
        if prefix == layers_path:
            return [f"{prefix}.{i}" for i in range(len(layers))]
        if prefix and not layers_path.startswith(prefix + "."):
            return [prefix]
        own = [name for name, _ in chain(module.named_parameters(recurse=False), module.named_buffers(recurse=False))]
        children = [p for name, child in module.named_children() for p in parts(f"{prefix}.{name}".lstrip("."), child)]
        return [f"{prefix}.{name}".lstrip(".") for name in own] + children

    plan: dict[str, int | str] = {part: 0 if i % 2 == 0 else "cpu" for i, part in enumerate(parts("", model))}
    for tied, source in model.all_tied_weights_keys.items():
        plan[tied.rsplit(".", 1)[0]] = placed_on(plan, source)
    return plan


@needs_cuda
@pytest.mark.parametrize("family", FAMILIES)
def test_gpu_layers_alternating_with_cpu_layers_give_the_cpu_models_outputs(checkpoints, records, family, monkeypatch):
    """Each decoder layer computes on the device it sits on, so tensors cross devices every layer."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # the vision convolutions, as on the CPU
    path = checkpoints[family]
    whole, processor = load_vlm(path, device="cpu", attn_implementation="eager")
    mixed, _ = load_vlm(path, device="cpu", attn_implementation="eager")
    dispatch_model(mixed, alternating_map(mixed), main_device="cpu")
    _, layers = architecture(mixed).decoder_layers(mixed)
    kinds = [execution_device(layer).type for layer in layers]
    assert set(kinds) == {"cuda", "cpu"} and all(a != b for a, b in zip(kinds, kinds[1:]))
    assert_same_outputs(whole, mixed, processor, records, atol=1e-4)


@needs_cuda
@pytest.mark.parametrize("family", ["qwen2_vl", "gemma3"])
def test_a_model_split_across_a_gpu_and_the_cpu_answers_like_it_does_on_the_gpu(checkpoints, records, family):
    path = checkpoints[family]
    whole, processor = load_vlm(path, device="cuda", attn_implementation="eager")
    memory = split_memory(path, torch.bfloat16, "0")
    split, _ = load_vlm(path, device="cuda", device_map="sequential", max_memory=memory, attn_implementation="eager")
    assert set(layer_devices(split, split.hf_device_map)) == {0, "cpu"}
    assert execution_device(split.get_input_embeddings()).type == "cuda"
    assert_same_outputs(whole, split, processor, records, atol=1e-3)
    settings = PruningSettings(method="guided", keep_ratios=(1.0, 0.5), prune_layer=0.5)
    ours = PrunedRunner(load_pair(path, path, settings, "cuda"), SETTINGS, settings)
    pair = load_pair(path, path, settings, "cuda", device_map="sequential", max_memory=memory)
    assert pair.shared_vision
    assert_same_rows(PrunedRunner(pair, SETTINGS, settings).answer(records), ours.answer(records))
