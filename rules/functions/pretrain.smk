# Settings and input functions of the pretraining rules (rules/pretrain.smk).

from vlmflow.core.settings import ZIMAGE_PART_NEEDS, ZIMAGE_PARTS, ZImagePartSettings

# Settings a pretrained model inherits unless `pretrain.defaults` or the model sets them. Budgets
# are in samples (`samples`, `scales`); the steps follow from the effective batch.
PRETRAIN_DEFAULTS = {
    **asdict(TrainSettings()),
    "mode": "full",
    "datasets": [],
    "eval": [],
    "samples": 64000,
    "scales": [],
    "prompt": GENERATION_DEFAULTS["prompt"],
    "system_prompt": None,
    "device": "auto",
    "wandb": False,
    "threads": 2,
    "gpus": 1,
    "loader_workers": 0,
}
ZOO_DTYPE = "float16"  # of the shipped weights; each scale is evaluated as shipped


def pretrain_start(spec):
    """How a pretrained model's step 0 is made: `init` (a copy of `init_from`: continued
    pretraining), `graft` (`vision_from`'s tower on its own random build) or `build` (random)."""
    if "init_from" in spec:
        return "init"
    return "graft" if "vision_from" in spec else "build"


def pretrain_models(start=None):
    """The models to pretrain; start="build" / "graft" / "init": only those whose step 0 is made so."""
    models = family_config("pretrain").get("models", {})
    if start is None:
        return models
    return {name: spec for name, spec in models.items() if pretrain_start(spec) == start}


@cache
def pretrain_spec(name):
    """A pretrained model's full settings (built-in < pretrain.defaults < the model)."""
    return merged_settings("pretrain", PRETRAIN_DEFAULTS, pretrain_models()[name])


def samples_per_step(name):
    spec = pretrain_spec(name)
    return spec["batch_size"] * spec["grad_accum"]


def pretrain_scales(name):
    """The sample counts kept as checkpoints: 0 (the random build, "vanilla"), the scales and the
    budget."""
    spec = pretrain_spec(name)
    return sorted({0, *spec["scales"], spec["samples"]})


def pretrain_scale_models():
    """{"<model>.samples-<n>": its exported weights}: each scale as a model the evaluation runs."""
    return {
        f"{name}.samples-{samples}": f"results/pretrain/weights/{name}/samples-{samples}"
        for name in pretrain_models()
        for samples in pretrain_scales(name)
    }


def pretrain_vqa_experiments():
    """Every scale of every pretrained model on each of its `eval` datasets (the pretraining's
    per-type accuracy against samples); never part of the summary."""
    return {
        f"pretrain.{name}.samples-{samples}.{dataset}": {
            "model": f"{name}.samples-{samples}",
            "dataset": dataset,
            "prompt": pretrain_spec(name)["prompt"],
            "system_prompt": pretrain_spec(name)["system_prompt"],
        }
        for name in pretrain_models()
        for samples in pretrain_scales(name)
        for dataset in pretrain_spec(name)["eval"]
    }


def pretrain_settings(wildcards):
    spec = pretrain_spec(wildcards.experiment)
    return {key: spec[key] for key in TRAIN_SETTING_KEYS} | {
        "steps": spec["samples"] // samples_per_step(wildcards.experiment)
    }


def pretrain_generation(wildcards):
    spec = pretrain_spec(wildcards.experiment)
    return {"prompt": spec["prompt"], "system_prompt": spec["system_prompt"]}


def pretrain_threads(wildcards):
    spec = pretrain_spec(wildcards.experiment)
    return (spec["threads"] + spec["loader_workers"]) * spec["gpus"]


def pretrain_gpus(wildcards):
    return pretrain_spec(wildcards.experiment)["gpus"]


def pretrain_build_spec(wildcards):
    return pretrain_spec(wildcards.model)["build"]


def pretrained_source(source):
    """Another pretrained model's exported last scale (the weights as shipped), or a checkpoint folder."""
    if source in pretrain_models():
        return f"results/pretrain/weights/{source}/samples-{pretrain_scales(source)[-1]}"
    return source


def pretrain_vision_source(wildcards):
    """What the model's tower starts from."""
    return pretrained_source(pretrain_models()[wildcards.model]["vision_from"])


def pretrain_init_source(wildcards):
    """What a continued pretraining starts from."""
    return pretrained_source(pretrain_models()[wildcards.model]["init_from"])


def pretrain_init_origin(wildcards):
    """The model and samples a continued pretraining starts from, when `init_from` names a pretrained
    model (a folder's own provenance.json says it otherwise)."""
    source = pretrain_models()[wildcards.model].get("init_from")
    if source in pretrain_models():
        return {"model": source, "samples": pretrain_scales(source)[-1]}
    return {}


def pretrain_data(name):
    caches = [cache_outputs(dataset) for dataset in pretrain_spec(name)["datasets"]]
    return {
        "caches": [files["cache"] for files in caches],
        "images": [files["images"] for files in caches if "images" in files],
    }


def pretrain_stage_inputs(wildcards):
    """A stage continues from the previous scale's state (the first from the random build)."""
    name, step = wildcards.experiment, int(wildcards.step)
    steps = [samples // samples_per_step(name) for samples in pretrain_scales(name)]
    if step not in steps:
        raise ValueError(f"results/pretrain/{name}/step-{step}: not a configured scale (steps {steps})")
    inputs = {"model": f"results/pretrain/{name}/step-0", **pretrain_data(name)}
    earlier = [s for s in steps if 0 < s < step]
    if earlier:
        inputs["previous"] = f"results/pretrain/{name}/step-{earlier[-1]}"
    return inputs


def pretrain_run_dir(wildcards):
    return f"results/pretrain/{wildcards.experiment}/run"


def scale_checkpoint(wildcards):
    """The training checkpoint of a scale (samples -> its step)."""
    step = int(wildcards.samples) // samples_per_step(wildcards.model)
    return f"results/pretrain/{wildcards.model}/step-{step}"


def zoo_package_inputs(wildcards):
    """What a shipped scale's provenance is made of: its weights, the metrics of its evaluation,
    the training log up to it, the corpus and the first-steps digest."""
    name, samples = wildcards.model, int(wildcards.samples)
    inputs = {
        "weights": f"results/pretrain/weights/{name}/samples-{samples}",
        "metrics": [
            f"results/vqa/pretrain.{name}.samples-{samples}.{d}/metrics.json" for d in pretrain_spec(name)["eval"]
        ],
        "first_steps": f"results/pretrain/{name}/first_steps.json",
        **pretrain_data(name),
    }
    if samples:
        inputs["checkpoint"] = scale_checkpoint(wildcards)
    start = pretrain_start(pretrain_models()[name])
    if start == "graft":
        inputs["vision"] = pretrain_vision_source(wildcards)
    elif start == "init":
        inputs["init"] = pretrain_init_source(wildcards)
    return inputs


def pretrain_first_steps_inputs(wildcards):
    return {"model": f"results/pretrain/{wildcards.experiment}/step-0", **pretrain_data(wildcards.experiment)}


def pretrain_provenance_config(wildcards):
    """What the provenance records as the model's config: its full pretraining settings."""
    return pretrain_spec(wildcards.model)


def pretrain_outputs():
    """The `pretrain` target: every scale of every model, the foveated parts and the conditioning
    pipelines, packaged for resources/zoo/."""
    scales = [
        f"results/pretrain/zoo/{name}/samples-{samples}"
        for name in pretrain_models()
        for samples in pretrain_scales(name)
    ]
    parts = [
        f"results/pretrain/zoo/{name}/samples-{foveated_parts_samples(name)}" for name in pretrain_foveated_models()
    ]
    return scales + parts + [f"results/pretrain/zoo/{name}" for name in pretrain_conditioning_models()]


# The foveated parts (`pretrain.foveated`): what a pretraining run inherits unless it sets it.
PRETRAIN_FOVEATED_DEFAULTS = {"device": "auto", "threads": 2, "gpus": 1}
PRETRAIN_FOVEATED_SETTINGS = {**asdict(FoveatedSettings()), "architecture": "multi_token"}


def pretrain_foveated_models():
    return family_config("pretrain").get("foveated", {})


@cache
def pretrain_foveated_spec(name):
    """A foveated parts' pretraining: its build, samples, how it runs and its full training
    settings (built-in < its `settings`; `budget` is `samples`)."""
    own = pretrain_foveated_models()[name]
    settings = frozen_settings({**PRETRAIN_FOVEATED_SETTINGS, **own.get("settings", {}), "budget": own["samples"]})
    return {**PRETRAIN_FOVEATED_DEFAULTS, **own, "settings": settings}


def foveated_parts_samples(name):
    """The samples the trained parts have seen: the budget, in whole steps."""
    settings = FoveatedSettings(**pretrain_foveated_spec(name)["settings"])
    return settings.steps * settings.batch_size


def pretrain_foveated_build_spec(wildcards):
    return pretrain_foveated_spec(wildcards.model)["build"]


def pretrain_foveated_settings(wildcards):
    return pretrain_foveated_spec(wildcards.run)["settings"]


def pretrain_foveated_threads(wildcards):
    spec = pretrain_foveated_spec(wildcards.run)
    return spec["threads"] * spec["gpus"]


def pretrain_foveated_gpus(wildcards):
    return pretrain_foveated_spec(wildcards.run)["gpus"]


def pretrain_foveated_parts(wildcards):
    build = f"results/pretrain/{wildcards.run}/random"
    return {"vision": f"{build}/vision", "language": f"{build}/language"}


def pretrain_foveated_inputs(wildcards):
    """The random build, the pretraining corpus and the default's shapes val set (the evaluation)."""
    return {
        "parts": f"results/pretrain/{wildcards.run}/random",
        "train": "resources/raw/pretrain/shapes/train.jsonl",
        "val": "resources/raw/shapes/val.jsonl",
    }


def pretrain_foveated_package_inputs(wildcards):
    name = wildcards.model
    if int(wildcards.samples) != foveated_parts_samples(name):
        raise ValueError(
            f"results/pretrain/zoo/{name}/samples-{wildcards.samples}: the parts are shipped after "
            f"{foveated_parts_samples(name)} samples only"
        )
    return {
        "model": f"results/pretrain/{name}/model",
        "log": f"results/pretrain/{name}/log.jsonl",
        "evals": f"results/pretrain/{name}/evals.jsonl",
        "first_steps": f"results/pretrain/{name}/first_steps.json",
        "corpus": "resources/raw/pretrain/shapes/train.jsonl",
        "evaluation": f"results/pretrain/{name}/eval.json",
    }


def pretrain_foveated_provenance_config(wildcards):
    return pretrain_foveated_spec(wildcards.model)


# The VL-conditioning study's Z-Image + Qwen3-VL (`pretrain.conditioning`): each part's training.
PRETRAIN_CONDITIONING_DEFAULTS = {"threads": 2, "eval": {"steps": 8}}


def pretrain_conditioning_models():
    return family_config("pretrain").get("conditioning", {})


def pretrain_conditioning_spec(name):
    return {**PRETRAIN_CONDITIONING_DEFAULTS, **pretrain_conditioning_models()[name]}


def pretrain_conditioning_build_spec(wildcards):
    return pretrain_conditioning_spec(wildcards.model)["build"]


def pretrain_conditioning_part_settings(wildcards):
    """A part's full training settings (built-in < its own)."""
    return asdict(ZImagePartSettings(**pretrain_conditioning_spec(wildcards.model)[wildcards.part]))


def pretrain_conditioning_threads(wildcards):
    return pretrain_conditioning_spec(wildcards.model)["threads"]


def pretrain_conditioning_part_inputs(wildcards):
    """The random build, the scenes and the trained parts this part learns from."""
    run = f"results/pretrain/{wildcards.model}"
    needed = {part: f"{run}/{part}" for part in ZIMAGE_PART_NEEDS[wildcards.part]}
    return {"random": f"{run}/random", "scenes": "resources/raw/pretrain/scenes/train", **needed}


def pretrain_conditioning_package_inputs(wildcards):
    run = f"results/pretrain/{wildcards.model}"
    return {
        "random": f"{run}/random",
        "scenes": "resources/raw/pretrain/scenes/train",
        "val": "resources/raw/scenes/val",
        "first_steps": f"{run}/first_steps.json",
        **{part: f"{run}/{part}" for part in ZIMAGE_PARTS},
        **{f"{part}_log": f"{run}/{part}.jsonl" for part in ZIMAGE_PARTS},
    }


def pretrain_conditioning_provenance_config(wildcards):
    """The model's spec with each part's full settings."""
    spec = pretrain_conditioning_spec(wildcards.model)
    return {**spec, **{part: asdict(ZImagePartSettings(**spec[part])) for part in ZIMAGE_PARTS}}


def pretrain_synth_size(fmt):
    """A params function: the size of the pretraining corpus' split of one synthetic format."""

    def split_size(wildcards):
        return family_config("pretrain")["synthetic"]["sizes"][fmt]

    split_size.__name__ = f"pretrain_{fmt}_size"
    return split_size


def pretrain_synth_seed():
    return family_config("pretrain").get("synthetic", {}).get("seed", 1)


def zoo_models():
    """Pretrained models and foveated parts shipped in resources/zoo/ (each with its provenance)."""
    names = [*pretrain_models(), *pretrain_foveated_models()]
    return [name for name in names if Path(f"resources/zoo/{name}").is_dir()]


def zoo_conditioning_models():
    """Pretrained conditioning pipelines shipped in resources/zoo/ (one provenance each)."""
    return [name for name in pretrain_conditioning_models() if Path(f"resources/zoo/{name}/provenance.json").is_file()]


def zoo_provenance(wildcards):
    return sorted(str(p) for p in Path(f"resources/zoo/{wildcards.model}").glob("samples-*/provenance.json"))


def zoo_figures():
    return [f"results/pretrain/{name}/pretraining.png" for name in [*zoo_models(), *zoo_conditioning_models()]]


SOURCE_KINDS = {  # what `vision_from` / `init_from` may name besides a checkpoint folder
    "vision_from": "a model under pretrain.models that starts from its own random build",
    "init_from": "another model under pretrain.models",
}


def check_source(name, key, source):
    """A model's `vision_from` or `init_from` names another pretrained model (for `vision_from` not
    a graft itself) or a checkpoint folder."""
    models = pretrain_models()
    if source in models:
        if source == name:
            problem = "is the model itself"
        elif key == "vision_from" and pretrain_start(models[source]) == "graft":
            problem = "starts from another tower itself"
        else:
            return
    elif Path(source).is_dir():
        return
    else:
        problem = "is neither a pretrained model nor a checkpoint folder"
    raise ValueError(
        f"config: pretrain.models.{name}.{key}: '{source}' {problem}; name {SOURCE_KINDS[key]}, or a checkpoint folder"
    )


def check_pretrain():
    for name in pretrain_models():
        spec = pretrain_spec(name)
        for key in ("datasets", "eval"):
            for dataset in spec[key]:
                check_reference(f"pretrain.models.{name}.{key}", "dataset", dataset)
        per_step = samples_per_step(name)
        for samples in pretrain_scales(name):
            if samples % per_step or samples > spec["samples"]:
                raise ValueError(
                    f"config: pretrain.models.{name}: scale {samples} must be a multiple of the samples per step "
                    f"({per_step}) and at most samples ({spec['samples']})"
                )
        for key in SOURCE_KINDS:
            if key in spec:
                check_source(name, key, spec[key])
        if "init_from" in spec and {"build", "vision_from"} & spec.keys():
            raise ValueError(
                f"config: pretrain.models.{name}: init_from continues a pretrained model, so it takes no build "
                "or vision_from"
            )
        if not {"build", "init_from"} & spec.keys():
            raise ValueError(
                f"config: pretrain.models.{name}: give build (a new model) or init_from (continued pretraining)"
            )
        if not spec["datasets"]:
            raise ValueError(f"config: pretrain.models.{name}: no datasets to pretrain on")
    for name in pretrain_conditioning_models():
        if name in [*pretrain_models(), *pretrain_foveated_models()]:
            raise ValueError(f"config: pretrain.conditioning.{name}: the name is taken by another pretrained model")
        if "scenes" not in family_config("pretrain").get("synthetic", {}).get("sizes", {}):
            raise ValueError(
                f"config: pretrain.conditioning.{name}: give pretrain.synthetic.sizes.scenes, the size of its corpus"
            )
    for name in pretrain_foveated_models():
        if name in pretrain_models():
            raise ValueError(f"config: pretrain.foveated.{name}: the name is taken by pretrain.models.{name}")
        misplaced = {"model", "data", "budget", "device", "threads", "gpus"} & set(
            pretrain_foveated_models()[name].get("settings", {})
        )
        if misplaced:
            raise ValueError(
                f"config: pretrain.foveated.{name}.settings: {', '.join(sorted(misplaced))} cannot be set here; "
                "the budget is `samples`, device, threads and gpus sit beside `settings`, and the parts train on "
                "their own build and corpus"
            )
        if "shapes" not in family_config("pretrain").get("synthetic", {}).get("sizes", {}):
            raise ValueError(
                f"config: pretrain.foveated.{name}: give pretrain.synthetic.sizes.shapes, the size of its corpus"
            )


check_pretrain()
