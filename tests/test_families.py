"""The family x stage matrix: every cell an equivalence on a real tiny checkpoint of that family.

A cell the family's adapter declares unsupported asserts the clear error instead, naming the family
and the stage; docs/families.md is generated from the same adapters (docs/family_matrix.py).
"""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pytest
import torch
from conftest import FAMILY_SPECS, make_records

from vlmflow.architectures import registry
from vlmflow.architectures.base import STAGES, Architecture, UnsupportedStage
from vlmflow.architectures.registry import ARCHITECTURES, architecture
from vlmflow.core.models import load_vlm
from vlmflow.core.prompts import encode_batch, load_image, processor_inputs, prompt_and_target, render_prompt
from vlmflow.core.settings import GenerationSettings, TrainSettings
from vlmflow.core.timing import ForwardClock
from vlmflow.finetune.examples import collate, label_report
from vlmflow.finetune.sanity import sanity_overfit
from vlmflow.finetune.trainer import component, prepare_model
from vlmflow.guided.importance import ImportanceAccumulator, random_scores
from vlmflow.guided.pruning import generate, language_model, prepare_inputs
from vlmflow.guided.runner import _special_ids
from vlmflow.guided.shared_vision import SharedVision, shared_vision_reason
from vlmflow.probing.extraction import hooked_layers, last_token_states
from vlmflow.vqa.constrained import constrained_generate, rank_candidates
from vlmflow.vqa.inference import generate_batch

FAMILIES = list(FAMILY_SPECS)
COLORS = ["red", "green", "blue", "yellow"]


def settings_for(family: str, **changes) -> GenerationSettings:
    """Chat families use their template; PaliGemma (no chat template) its task prompt."""
    template = "answer en {question}" if family == "paligemma" else None
    return GenerationSettings(batch_size=4, max_new_tokens=4, prompt_template=template, **changes)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Ragged questions (a really left-padded batch) with the colour candidates."""
    base = make_records(tmp_path_factory.mktemp("family_images"), 16)
    return [replace(r, question=r.question + " Look closely." * (i % 3), candidates=COLORS) for i, r in enumerate(base)]


@pytest.fixture(scope="module")
def models(family_checkpoints):
    cache = {}

    def load(family: str):
        if family not in cache:
            cache[family] = load_vlm(family_checkpoints[family], device="cpu", attn_implementation="eager")
        return cache[family]

    return load


# --- the cells ---------------------------------------------------------------------------------


def check_inference(family, model, processor, records, path):
    """Batched, left-padded inference equals per-sample generation."""
    settings = settings_for(family)
    batch = generate_batch(model, processor, records[:4], settings)
    alone = [generate_batch(model, processor, [r], settings)[0] for r in records[:4]]
    assert batch == alone


def check_scoring(family, model, processor, records, path):
    """Likelihood decoding picks the candidate with the highest summed log-probability, scored here
    one candidate at a time; constrained decoding answers with one of the candidates."""
    settings = settings_for(family)
    for record, (choice, scores) in zip(records[:2], rank_candidates(model, processor, records[:2], settings)):
        own = []
        for candidate in record.candidates:
            prompt, target = prompt_and_target(processor, record.question, candidate, settings)
            inputs = processor_inputs(model, processor, [prompt + target], [load_image(record)], "right")
            n = len(processor.tokenizer(target, add_special_tokens=False)["input_ids"])
            with torch.inference_mode():
                logprobs = model(**inputs).logits[0, -n - 1 : -1].float().log_softmax(-1)
            own.append(float(logprobs.gather(1, inputs["input_ids"][0, -n:, None]).sum()))
        np.testing.assert_allclose(scores, own, atol=1e-4)
        assert choice == record.candidates[int(np.argmax(own))]
    assert set(constrained_generate(model, processor, records[:3], settings)) <= set(COLORS)


def check_lora(family, model, processor, records, path):
    """Every parameter belongs to the language model, the vision tower or the projector; LoRA
    trains only the language model by default; answer-only labels decode to the answer and the
    end-of-turn token."""
    arch = architecture(model)
    parts = {name: component(name) for name, _ in model.named_parameters()}
    assert set(parts.values()) == {"language", "vision", "projector"}, "per-component learning rates need all three"
    for name, part in parts.items():
        if name.startswith(arch.vision_blocks_path):
            assert part == "vision", name
        if name.startswith(arch.language_model_path):
            assert part == "language", name
    fresh, _ = load_vlm(path, device="cpu")
    wrapped = prepare_model(fresh, TrainSettings(mode="lora", lora_r=2))
    trainable = [name for name, param in wrapped.named_parameters() if param.requires_grad]
    assert trainable and all(component(name) == "language" and "lora_" in name for name in trainable)
    name = architecture(model).language_module_name()
    assert all(f".{name}." in n for n in trainable)
    settings = settings_for(family)
    batch = collate(architecture(model), processor, records[:4], settings)
    for record, row in zip(records, label_report(processor, batch, [r.question_id for r in records[:4]])):
        _, target = prompt_and_target(processor, record.question, record.answers[0], settings)
        assert row["supervised_text"] == target
        assert record.answers[0] in target and target.endswith(processor.tokenizer.eos_token)


def check_full_finetune(family, model, processor, records, path, tmp_path):
    """A 16-sample full fine-tune overfits: the loss falls well below where it started."""
    settings = TrainSettings(mode="full", batch_size=8, lr=1e-2, warmup_steps=0)
    report = sanity_overfit(
        path,
        records[:16],
        settings,
        settings_for(family),
        samples=16,
        steps=40,
        threshold=1.5,
        log_path=tmp_path / "sanity.jsonl",
        device="cpu",
    )
    assert report["best_loss"] < 1.5 < report["first_loss"]


def check_hooks(family, model, processor, records, path):
    """The hooked decoder-layer outputs equal `output_hidden_states` (the last one before the norm)."""
    inputs = encode_batch(model, processor, records[:3], settings_for(family))
    _, layers = hooked_layers(model)
    states = last_token_states(model, dict(inputs), None)
    with torch.inference_mode():
        reference = model(**inputs, output_hidden_states=True).hidden_states
    for layer in range(len(layers) - 1):
        np.testing.assert_allclose(states[layer], reference[layer + 1][:, -1].float().numpy(), atol=1e-6)
    with torch.inference_mode():
        normed = language_model(model).norm(torch.from_numpy(states[len(layers) - 1])).numpy()
    np.testing.assert_allclose(normed, reference[-1][:, -1].float().numpy(), atol=1e-5)


def check_pruning(family, model, processor, records, path):
    """Guided (with the guide's attention observed), FastV and random at keep 1.0 equal plain
    `generate` (tokens, and log-probabilities within 1e-5: PaliGemma's bidirectional prefix moves
    them by 3e-5 on a tiny model); at keep 0.5 the kept tokens keep their original positions."""
    inputs = encode_batch(model, processor, records[:4], settings_for(family))
    with torch.inference_mode():
        out = model.generate(
            **inputs, max_new_tokens=5, do_sample=False, output_logits=True, return_dict_in_generate=True
        )
    reference = out.sequences[:, inputs["input_ids"].shape[1] :]
    reference_logprobs = torch.stack(out.logits, 1).float().log_softmax(-1).gather(2, reference[..., None])[..., 0]
    language = prepare_inputs(model, dict(inputs))
    special = dict(zip(("eos_token_ids", "pad_token_id"), _special_ids(model, processor)))
    layers = len(language_model(model).layers)
    runs = {
        "guided": dict(observe=ImportanceAccumulator(language, layers, None, "prompt_and_generated")),
        "fastv": dict(keep_ratio=1.0, prune_at=1, fastv=True),
        "random": dict(keep_ratio=1.0, prune_at=1, scores=random_scores(["a"] * 4, language.visual_counts, 0)),
    }
    for method, options in runs.items():
        ours = generate(model, language, max_new_tokens=5, **options, **special)
        for row in range(4):
            n = int(ours.lengths[row])
            assert ours.tokens[row, :n].tolist() == reference[row, :n].tolist(), method
            np.testing.assert_allclose(ours.logprobs[row, :n], reference_logprobs[row, :n], atol=1e-5, err_msg=method)

    seen = []
    rotary = language_model(model).rotary_emb
    handle = rotary.register_forward_hook(lambda _m, args, _o: seen.append(args[1].clone()))
    scores = random_scores(["b"] * 4, language.visual_counts, 1)
    try:
        pruned = generate(model, language, max_new_tokens=1, keep_ratio=0.5, prune_at=0, scores=scores, **special)
    finally:
        handle.remove()
    prefill = seen[-1] if len(seen) == 1 else seen[0]
    positions = language.positions
    original = positions[1:] if positions.dim() == 3 and positions.shape[0] == 4 else positions
    for row, kept in enumerate(pruned.kept):
        visual = language.visual[row].nonzero().squeeze(1)
        keep = ~language.visual[row]
        keep[visual[kept]] = True
        want = original[..., row, keep.nonzero().squeeze(1)]
        assert torch.equal(prefill[..., row, prefill.shape[-1] - want.shape[-1] :], want)


def check_shared_vision(family, model, processor, records, path):
    """Features from a replayed tower equal the model's own, in order, even when the second model's
    own tower blocks are broken: they do not run."""
    inputs = encode_batch(model, processor, records[:3], settings_for(family))
    own = prepare_inputs(model, dict(inputs))
    decode, decode_processor = load_vlm(path, device="cpu", attn_implementation="eager")
    assert shared_vision_reason(model, processor, decode, decode_processor) is None
    shared = SharedVision()
    prepare_inputs(model, dict(inputs), shared)
    with torch.no_grad():
        for param in architecture(decode).vision_blocks(decode).parameters():
            param.fill_(float("nan"))
    replayed = prepare_inputs(decode, dict(inputs), shared)
    assert torch.equal(replayed.embeds, own.embeds)
    for key, value in own.extras.items():
        other = replayed.extras[key]
        assert (
            all(torch.equal(a, b) for a, b in zip(value, other))
            if isinstance(value, list)
            else torch.equal(value, other)
        )


CELLS = {
    "inference": check_inference,
    "scoring": check_scoring,
    "lora": check_lora,
    "full_finetune": check_full_finetune,
    "hooks": check_hooks,
    "pruning": check_pruning,
    "shared_vision": check_shared_vision,
}


def refuse(stage, model, processor, records, family):
    """Call the real entry point of `stage`; it must raise UnsupportedStage."""
    settings = settings_for(family)
    if stage == "scoring":
        rank_candidates(model, processor, records[:1], settings)
    elif stage in ("lora", "full_finetune"):
        prepare_model(model, TrainSettings(mode="lora" if stage == "lora" else "full"))
    elif stage == "hooks":
        hooked_layers(model)
    elif stage == "pruning":
        prepare_inputs(model, dict(encode_batch(model, processor, records[:1], settings)))
    elif stage == "shared_vision":
        reason = shared_vision_reason(model, processor, model, processor)
        assert reason and f"'{family}'" in reason and "'shared_vision'" in reason
        raise UnsupportedStage(family, stage, reason)


def test_cells_cover_every_stage():
    assert set(CELLS) == set(STAGES)


@pytest.mark.parametrize("stage", list(STAGES))
@pytest.mark.parametrize("family", FAMILIES)
def test_family_stage(family, stage, models, records, family_checkpoints, tmp_path):
    model, processor = models(family)
    arch = ARCHITECTURES[family]
    assert architecture(model) is arch
    if arch.supports(stage):
        cell = CELLS[stage]
        extra = {"tmp_path": tmp_path} if stage == "full_finetune" else {}
        cell(family, model, processor, records, family_checkpoints[family], **extra)
    else:
        with pytest.raises(UnsupportedStage, match=rf"model family '{family}' does not support stage '{stage}'"):
            refuse(stage, model, processor, records, family)


def test_an_unknown_family_runs_inference_and_names_itself_everywhere_else(family_checkpoints, records):
    model, processor = load_vlm(family_checkpoints["qwen2_vl"], device="cpu")
    model.config.model_type = "blip_x"
    with ForwardClock(model):  # as the vqa stage times it
        assert len(generate_batch(model, processor, records[:2], settings_for("qwen2_vl"))) == 2
    for stage in STAGES:
        if stage != "inference":
            with pytest.raises(UnsupportedStage, match=rf"model family 'blip_x' does not support stage '{stage}'"):
                refuse(stage, model, processor, records, "blip_x")


def test_a_processor_without_chat_template_needs_a_prompt_template(models):
    _, processor = models("paligemma")
    with pytest.raises(ValueError, match="no chat template: set generation.prompt_template"):
        render_prompt(processor, "What color?", GenerationSettings())


@pytest.mark.parametrize("family", ["qwen3_vl", "gemma3", "paligemma"])
def test_without_its_adapter_overrides_the_family_fails_its_pruning_cell(family, models, records, monkeypatch):
    """The cells can fail: with the base answers in place of the family's own (deepstack, per-layer
    rotary and image attention, the bidirectional prefix), keep 1.0 no longer equals `generate`."""
    model, processor = models(family)
    arch = ARCHITECTURES[family]
    plain = Architecture(**{f.name: getattr(arch, f.name) for f in fields(arch)})
    for kind in arch.model_types:
        monkeypatch.setitem(registry._BY_MODEL_TYPE, kind, plain)
    with pytest.raises((AssertionError, TypeError)):  # Gemma3's rotary embedding needs its layer type
        check_pruning(family, model, processor, records, None)
