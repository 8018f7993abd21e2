# Settings and input functions of the VQA evaluation rules (rules/vqa.smk).

from vlmflow.core.shards import shard_labels

# Settings a VQA experiment inherits unless `vqa.defaults` or the experiment sets them.
VQA_DEFAULTS = {**GENERATION_DEFAULTS, "controls": []}


# The config is fixed once parsed; the experiment tables are built once, not once per job (a sweep
# of 10,000 experiments would otherwise rebuild them tens of thousands of times while planning).
@cache
def vqa_experiments():
    """The configured VQA experiments and their controls, plus the base / trained evaluations of
    fine-tuning experiments and the evaluations of every pretraining scale."""
    configured = family_config("vqa").get("experiments", {})
    return {**configured, **control_experiments(), **trained_vqa_experiments(), **pretrain_vqa_experiments()}


def control_experiments():
    """Each configured experiment's `controls`: "<experiment>.<control>", the same settings on the
    dataset's control copy ("<dataset>.<control>")."""
    return {
        f"{name}.{control}": {**spec, "dataset": f"{spec['dataset']}.{control}", "controls": []}
        for name, spec in family_config("vqa").get("experiments", {}).items()
        for control in merged_settings("vqa", VQA_DEFAULTS, spec)["controls"]
    }


# Any one path segment: the name is checked by vqa_experiment. Spelling out every experiment name
# as the wildcard's regex would put all of them into every output pattern Snakemake formats.
VQA_EXPERIMENT = r"[^/]+"


@cache
def vqa_experiment(name):
    """An experiment's full settings: built-in defaults < vqa.defaults < the experiment."""
    if name not in vqa_experiments():
        raise ValueError(
            f"results/vqa/{name}: no VQA experiment of that name (vqa.experiments, or a fine-tuning experiment's eval)"
        )
    spec = merged_settings("vqa", VQA_DEFAULTS, vqa_experiments()[name])
    spec.setdefault("metric", dataset_metric(spec["dataset"]))
    return spec


@cache
def sharded_vqa_experiments():
    """Experiments with `shards` > 1 or a `shard_size`: one job per shard, then a gather job."""
    return [name for name in vqa_experiments() if is_sharded(vqa_experiment(name))]


def unsharded_vqa_experiment():
    """The experiment wildcard of the one-job inference rule: any path segment but the sharded
    experiments' names (the segment ends at the '/' after it)."""
    sharded = sharded_vqa_experiments()
    return f"(?!(?:{one_of(sharded)})/){VQA_EXPERIMENT}" if sharded else VQA_EXPERIMENT


def vqa_shard_files(wildcards):
    count = shard_count(vqa_experiment(wildcards.experiment))
    return [f"results/vqa/{wildcards.experiment}/shards/{label}.jsonl" for label in shard_labels(count)]


def infer_inputs(wildcards):
    spec = vqa_experiment(wildcards.experiment)
    return {"model": model_path(spec["model"]), **cache_outputs(spec["dataset"])}


def generation_params(wildcards):
    spec = vqa_experiment(wildcards.experiment)
    return {key: spec[key] for key in asdict(GenerationSettings())}


def vqa_remote_code(wildcards):
    return trusts_remote_code(vqa_experiment(wildcards.experiment)["model"])


def vqa_cache(wildcards):
    return cache_outputs(vqa_experiment(wildcards.experiment)["dataset"])["cache"]


def vqa_dataset_format(wildcards):
    """The experiment's dataset format: the lmms_eval variant scores TextVQA by its own rules."""
    return dataset_config(vqa_experiment(wildcards.experiment)["dataset"])["format"]


def experiment_name(wildcards):
    return wildcards.experiment


def vqa_summary_entries():
    """Each configured experiment, followed by its controls (their stage: the control's name)."""
    return [
        {
            "experiment": name,
            "stage": name.removeprefix(configured).lstrip("."),  # "" or the control
            "family": "vqa",
            "model": vqa_experiment(name)["model"],
            "dataset": vqa_experiment(name)["dataset"],
            "kind": "accuracy",
            "source": f"results/vqa/{name}/metrics.json",
        }
        for configured in family_config("vqa").get("experiments", {})
        for name in [configured, *(f"{configured}.{c}" for c in vqa_experiment(configured)["controls"])]
    ]


def check_vqa():
    for name, spec in family_config("vqa").get("experiments", {}).items():
        check_reference(f"vqa.experiments.{name}.model", "model", spec["model"])
        check_reference(f"vqa.experiments.{name}.dataset", "dataset", spec["dataset"])
        check_inference_gpus(f"vqa.experiments.{name}", vqa_experiment(name))


check_vqa()
