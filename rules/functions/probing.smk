# Settings and input functions of the probing rules (rules/probing.smk).

from vlmflow.core.shards import shard_labels

# Settings a probing experiment inherits unless `probing.defaults` or the experiment sets them.
PROBING_DEFAULTS = {
    "layers": None,
    "dtype": "float16",
    "batch_size": 16,
    "max_new_tokens": 8,
    "permutations": 100,
    "seed": 0,
    "reliable_threshold": 0.6,
    "summary_layer": -1,
    "vertical_template": "Is the {a} above or under the {b}?",
    "prompt": GENERATION_DEFAULTS["prompt"],
    "system_prompt": None,
    "prompt_template": None,
    "device": "auto",
    **PLACEMENT_DEFAULTS,
    **INFERENCE_GPUS,
    "threads": GENERATION_DEFAULTS["threads"],
    "shards": 1,
    "shard_size": None,
}
PROBING_TAGS = ("all", "both_correct")  # every consistency over all pairs and over both-correct ones
PROBING_GENERATION_KEYS = ("batch_size", "max_new_tokens", "prompt", "system_prompt", "prompt_template")


def probing_experiments():
    return family_config("probing").get("experiments", {})


def probing_spec(name):
    """A probing experiment's full settings: built-in defaults < probing.defaults < the experiment;
    with `finetune`, the prompt format trained on."""
    spec = merged_settings("probing", PROBING_DEFAULTS, probing_experiments()[name])
    if "finetune" in spec:
        spec |= finetune_generation(spec["finetune"])
    return spec


def probing_scales(name):
    """{scale: (model label, checkpoint path)} in order. With `finetune`: "vanilla" (the base
    model) and "step-<n>" for every checkpoint the fine-tuning experiment keeps; else the `scales`
    mapping of scale names to configured models."""
    spec = probing_spec(name)
    if "finetune" in spec:
        experiment = spec["finetune"]
        base = finetune_spec(experiment)["model"]
        scales = {"vanilla": (base, model_path(base))}
        for step in finetune_stages(experiment):
            scales[f"step-{step}"] = (f"{experiment}/step-{step}", f"results/finetune/{experiment}/step-{step}")
        return scales
    return {scale: (model, model_path(model)) for scale, model in spec["scales"].items()}


def sharded_probing_experiments():
    """Experiments with `shards` > 1 or a `shard_size`: one extraction job per (scale, shard), then a
    gather job."""
    return [name for name in probing_experiments() if is_sharded(probing_spec(name))]


def unsharded_probing_experiments():
    return [name for name in probing_experiments() if not is_sharded(probing_spec(name))]


def probing_shard_files(suffix):
    """An input function: the shards' `<shard>.<suffix>.npz` of the job's experiment and scale."""

    def shard_files(wildcards):
        root = f"results/probing/{wildcards.experiment}/npz/shards/{wildcards.scale}"
        count = shard_count(probing_spec(wildcards.experiment))
        return [f"{root}/{label}.{suffix}.npz" for label in shard_labels(count)]

    shard_files.__name__ = f"probing_shard_{suffix}"
    return shard_files


def probing_scale_names():
    return sorted({scale for name in probing_experiments() for scale in probing_scales(name)})


def probing_extract_inputs(wildcards):
    spec = probing_spec(wildcards.experiment)
    scales = probing_scales(wildcards.experiment)
    if wildcards.scale not in scales:
        raise ValueError(
            f"results/probing/{wildcards.experiment}: '{wildcards.scale}' is not one of its scales {list(scales)}"
        )
    inputs = {"model": scales[wildcards.scale][1], **cache_outputs(spec["dataset"])}
    boxes = config["datasets"][spec["dataset"]].get("boxes")
    if boxes:
        inputs["boxes"] = boxes
    return inputs


def probing_cache(wildcards):
    return cache_outputs(probing_spec(wildcards.experiment)["dataset"])["cache"]


def probing_generation(wildcards):
    spec = probing_spec(wildcards.experiment)
    return {key: spec[key] for key in PROBING_GENERATION_KEYS}


def probing_scale_model(wildcards):
    """Whether the scale's model opts in to remote code (every scale of a fine-tuning experiment
    shares its base model's choice)."""
    spec = probing_spec(wildcards.experiment)
    return trusts_remote_code(spec["finetune"] if "finetune" in spec else spec["scales"][wildcards.scale])


def probing_folder(wildcards):
    return f"results/probing/{wildcards.experiment}"


def probing_scale_labels(wildcards):
    return {scale: label for scale, (label, _) in probing_scales(wildcards.experiment).items()}


def probing_analysis(wildcards):
    """The per-scale files the merge reads, for every scale."""
    root = probing_folder(wildcards)
    return [
        path
        for scale in probing_scales(wildcards.experiment)
        for path in (
            f"{root}/json/pred_stats_{scale}.json",
            f"{root}/json/category_validity_{scale}.json",
            f"{root}/csv/consistency_{scale}.csv",
            f"{root}/csv/cross_alignment_{scale}.csv",
        )
    ]


def probing_outputs():
    return [f"results/probing/{name}/plots/ablation.png" for name in probing_experiments()]


def probing_summary_entries():
    return [
        {
            "experiment": name,
            "family": "probing",
            "model": "+".join(label for label, _ in probing_scales(name).values()),
            "dataset": probing_spec(name)["dataset"],
            "kind": "probing",
            "source": f"results/probing/{name}/csv/summary.csv",
        }
        for name in probing_experiments()
    ]


def check_probing():
    for name, spec in probing_experiments().items():
        check_reference(f"probing.experiments.{name}.dataset", "dataset", spec["dataset"])
        check_inference_gpus(f"probing.experiments.{name}", merged_settings("probing", PROBING_DEFAULTS, spec))
        if config["datasets"][spec["dataset"]]["format"] != "swap_pairs":
            raise ValueError(
                f"config: probing.experiments.{name}.dataset: '{spec['dataset']}' is not a swap_pairs dataset"
            )
        if ("finetune" in spec) == ("scales" in spec):
            raise ValueError(f"config: probing.experiments.{name}: set exactly one of `finetune` or `scales`")
        if "finetune" in spec and spec["finetune"] not in finetune_experiments():
            raise ValueError(
                f"config: probing.experiments.{name}.finetune: unknown fine-tuning experiment '{spec['finetune']}'"
            )
        for scale, model in spec.get("scales", {}).items():
            check_reference(f"probing.experiments.{name}.scales.{scale}", "model", model)


check_probing()
