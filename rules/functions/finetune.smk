# Settings and input functions of the fine-tuning rules (rules/finetune.smk).

# Settings a fine-tuning experiment inherits unless `finetune.defaults` or the experiment sets them.
FINETUNE_DEFAULTS = {
    **asdict(TrainSettings()),
    "scales": [],
    "eval": [],
    "prompt": GENERATION_DEFAULTS["prompt"],
    "system_prompt": None,
    "device": "auto",
    "wandb": False,
    "threads": 2,
    "gpus": 1,
    "loader_workers": 0,
    "sanity": {"enabled": True, "samples": 64, "steps": 100, "threshold": 1.0},
}


def finetune_spec(name):
    """A fine-tuning experiment's full settings (built-in < finetune.defaults < the experiment)."""
    return merged_settings("finetune", FINETUNE_DEFAULTS, finetune_experiments()[name], nested=("sanity",))


def train_settings(wildcards):
    spec = finetune_spec(wildcards.experiment)
    return {key: spec[key] for key in TRAIN_SETTING_KEYS}


def train_gpus(wildcards):
    """Processes (and GPUs) of a training job: data-parallel when more than one."""
    return finetune_spec(wildcards.experiment)["gpus"]


def train_threads(wildcards):
    """`threads` and `loader_workers` per process, for each of the job's `gpus` processes."""
    spec = finetune_spec(wildcards.experiment)
    return (spec["threads"] + spec["loader_workers"]) * spec["gpus"]


def finetune_generation(name):
    """The prompt format trained on, which the evaluation of the trained model must reuse."""
    spec = finetune_spec(name)
    return {"prompt": spec["prompt"], "system_prompt": spec["system_prompt"]}


def train_generation(wildcards):
    return finetune_generation(wildcards.experiment)


def finetune_stages(name):
    """The step counts kept as checkpoints ("scales"), ending with the final step."""
    spec = finetune_spec(name)
    return sorted({*spec["scales"], spec["steps"]})


def trained_model_path(name):
    return f"results/finetune/{name}/step-{finetune_spec(name)['steps']}"


def finetune_inputs(wildcards):
    spec = finetune_spec(wildcards.experiment)
    caches = [cache_outputs(dataset) for dataset in spec["datasets"]]
    return {
        "model": model_path(spec["model"]),
        "caches": [files["cache"] for files in caches],
        "images": [files["images"] for files in caches if "images" in files],
    }


def finetune_stage_inputs(wildcards):
    """A stage trains from the previous stage's state, after the sanity gate passed."""
    stages = finetune_stages(wildcards.experiment)
    step = int(wildcards.step)
    if step not in stages:
        raise ValueError(f"results/finetune/{wildcards.experiment}/step-{step}: not a configured scale {stages}")
    inputs = finetune_inputs(wildcards)
    if finetune_spec(wildcards.experiment)["sanity"]["enabled"]:
        inputs["sanity"] = f"results/finetune/{wildcards.experiment}/sanity.json"
    earlier = [s for s in stages if s < step]
    if earlier:
        inputs["previous"] = f"results/finetune/{wildcards.experiment}/step-{earlier[-1]}"
    return inputs


def trained_model(wildcards):
    return trained_model_path(wildcards.experiment)


def run_dir(wildcards):
    return f"results/finetune/{wildcards.experiment}/run"


def trained_vqa_experiments():
    """For every fine-tuning experiment and eval dataset: the base model and the trained model,
    with the prompt format trained on, as two VQA experiments."""
    derived = {}
    for name, spec in finetune_experiments().items():
        prompt = finetune_generation(name)
        for dataset in spec.get("eval", []):
            derived[f"{name}.base.{dataset}"] = {"model": spec["model"], "dataset": dataset, **prompt}
            derived[f"{name}.{dataset}"] = {"model": name, "dataset": dataset, **prompt}
    return derived


def finetune_outputs():
    """Each experiment's training curve and label check (its checkpoints come with the summary)."""
    return [
        f"results/finetune/{name}/{file}"
        for name in finetune_experiments()
        for file in ("loss.png", "label_check.jsonl")
    ]


def finetune_summary_entries():
    entries = []
    for name, spec in finetune_experiments().items():
        entries.append(
            {
                "experiment": name,
                "family": "finetune",
                "model": name,
                "dataset": "+".join(spec["datasets"]),
                "kind": "training",
                "source": f"{trained_model_path(name)}/train_log.jsonl",
                "requires": trained_model_path(name),
            }
        )
        for dataset in spec.get("eval", []):
            for stage, model, experiment in (
                ("base", spec["model"], f"{name}.base.{dataset}"),
                ("trained", name, f"{name}.{dataset}"),
            ):
                entries.append(
                    {
                        "experiment": name,
                        "stage": stage,
                        "family": "finetune",
                        "model": model,
                        "dataset": dataset,
                        "kind": "accuracy",
                        "source": f"results/vqa/{experiment}/metrics.json",
                    }
                )
    return entries


def check_finetune():
    for name in set(config["models"]) & set(finetune_experiments()):
        raise ValueError(f"config: finetune.experiments.{name}: the name is already a model in `models`")
    for name, spec in finetune_experiments().items():
        check_reference(f"finetune.experiments.{name}.model", "model", spec["model"])
        steps = finetune_spec(name)["steps"]
        beyond = [scale for scale in finetune_spec(name)["scales"] if scale > steps]
        if beyond:
            raise ValueError(
                f"config: finetune.experiments.{name}.scales: {beyond} past the experiment's steps ({steps}); "
                "a scale is a checkpoint kept on the way"
            )
        for key in ("datasets", "eval"):
            for dataset in spec.get(key, []):
                check_reference(f"finetune.experiments.{name}.{key}", "dataset", dataset)
        full = finetune_spec(name)
        if full["grad_accum"] % full["gpus"]:
            raise ValueError(
                f"config: finetune.experiments.{name}: gpus: {full['gpus']} needs grad_accum divisible by "
                f"{full['gpus']} (each process takes grad_accum / gpus micro-batches of a step), got "
                f"grad_accum {full['grad_accum']}"
            )


check_finetune()
