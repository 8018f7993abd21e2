# Settings and input functions of the guided-pruning rules (rules/guided.smk).

from vlmflow.core.settings import PruningSettings
from vlmflow.core.shards import shard_labels
from vlmflow.guided.rows import keep_label

# Settings a guided experiment inherits unless `guided.defaults` or the experiment sets them.
GUIDED_DEFAULTS = {
    **{k: v for k, v in asdict(PruningSettings()).items() if k != "method"},
    "keep_ratios": list(PruningSettings().keep_ratios),
    "methods": ["guided", "fastv", "random"],
    "batch_size": 16,
    "max_new_tokens": GENERATION_DEFAULTS["max_new_tokens"],
    "reasoning_tokens": GENERATION_DEFAULTS["reasoning_tokens"],
    "chunk_batches": GENERATION_DEFAULTS["chunk_batches"],
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
PRUNING_KEYS = tuple(asdict(PruningSettings()))
BASELINE_METHODS = ("fastv", "random")
GUIDED_GENERATION_KEYS = (
    "batch_size",
    "max_new_tokens",
    "reasoning_tokens",
    "chunk_batches",
    "prompt",
    "system_prompt",
    "prompt_template",
)


def guided_experiments():
    return family_config("guided").get("experiments", {})


def guided_comparisons():
    return family_config("guided").get("comparisons", {})


def guided_spec(name):
    """A guided experiment's full settings: built-in defaults < guided.defaults < the experiment."""
    spec = merged_settings("guided", GUIDED_DEFAULTS, guided_experiments()[name])
    spec.setdefault("metric", dataset_metric(spec["dataset"]))
    return spec


def pruning_params(wildcards):
    spec = guided_spec(wildcards.experiment)
    return {**{key: spec[key] for key in PRUNING_KEYS if key != "method"}, "method": wildcards.method}


def guided_generation(wildcards):
    spec = guided_spec(wildcards.experiment)
    return {key: spec[key] for key in GUIDED_GENERATION_KEYS}


def guided_remote_code(wildcards):
    spec = guided_spec(wildcards.experiment)
    return [trusts_remote_code(spec[role]) for role in ("decode", "guide")]


def sharded_guided_experiments():
    """Experiments with `shards` > 1 or a `shard_size`: one decode job per (method, shard), then a
    gather job."""
    return [name for name in guided_experiments() if is_sharded(guided_spec(name))]


def unsharded_guided_experiments():
    return [name for name in guided_experiments() if not is_sharded(guided_spec(name))]


def guided_shard_files(kind, suffix):
    """An input function: the shards' `kind` files (rows .jsonl, importance .parquet) of a run."""

    def shard_files(wildcards):
        count = shard_count(guided_spec(wildcards.experiment))
        folder = f"results/guided/{wildcards.experiment}/{wildcards.method}/shards"
        return [f"{folder}/{label}.{kind}{suffix}" for label in shard_labels(count)]

    shard_files.__name__ = f"guided_shard_{kind}"
    return shard_files


def guided_run_inputs(wildcards):
    spec = guided_spec(wildcards.experiment)
    inputs = {"decode": model_path(spec["decode"]), **cache_outputs(spec["dataset"])}
    if wildcards.method == "guided":
        inputs["guide"] = model_path(spec["guide"])
    return inputs


def guided_cache(wildcards):
    return cache_outputs(guided_spec(wildcards.experiment)["dataset"])["cache"]


def guided_dataset_format(wildcards):
    """The experiment's dataset format, for the scorer (vlmflow.data.evaluate)."""
    return dataset_config(guided_spec(wildcards.experiment)["dataset"])["format"]


def guided_answer_sets(name):
    """(method, answers) pairs of an experiment: each method at each keep ratio, and the guide alone."""
    spec = guided_spec(name)
    pairs = [(method, f"keep-{keep_label(r)}") for method in spec["methods"] for r in spec["keep_ratios"]]
    return pairs + ([("guided", "guide")] if "guided" in spec["methods"] else [])


def answer_sets(wildcards):
    return guided_answer_sets(wildcards.experiment)


def answer_set_name(wildcards):
    return f"{wildcards.experiment}.{wildcards.method}.{wildcards.answers}"


def guided_metrics(wildcards):
    name = wildcards.experiment
    return [f"results/guided/{name}/{method}/{answers}/metrics.json" for method, answers in guided_answer_sets(name)]


def guided_rows(wildcards):
    name = wildcards.experiment
    return [f"results/guided/{name}/{method}/rows.jsonl" for method in guided_spec(name)["methods"]]


def retention_title(wildcards):
    return f"{wildcards.experiment}: accuracy against visual tokens kept"


def early_exit_title(wildcards):
    return f"{wildcards.experiment}: early exit on the guide's confidence and consistency"


def guided_outputs():
    """Per experiment the retention table and plot, and the early-exit sweep when it has a guide;
    per comparison its attention statistics."""
    files = []
    for name in guided_experiments():
        files.append(f"results/guided/{name}/accuracy_vs_retention.png")
        if "guided" in guided_spec(name)["methods"]:
            files.append(f"results/guided/{name}/early_exit.png")
    return files + [f"results/guided/compare/{name}.md" for name in guided_comparisons()]


def comparison_spec(name):
    """A comparison of two guided experiments' guide attention, at one keep ratio of the decode
    model (default: the smallest both ran)."""
    spec = dict(guided_comparisons()[name])
    if "keep_ratio" not in spec:
        ratios = (set(guided_spec(spec[role])["keep_ratios"]) for role in ("baseline", "variant"))
        spec["keep_ratio"] = min(set.intersection(*ratios))
    return spec


def comparison_params(wildcards):
    return comparison_spec(wildcards.comparison)


def comparison_keep(wildcards):
    return keep_label(comparison_spec(wildcards.comparison)["keep_ratio"])


def comparison_inputs(wildcards):
    spec = comparison_spec(wildcards.comparison)
    return {
        f"{role}_{kind}": f"results/guided/{spec[role]}/guided/{name}"
        for role in ("baseline", "variant")
        for kind, name in (("rows", "rows.jsonl"), ("importance", "importance.parquet"))
    }


def guided_summary_entries():
    entries = []
    for name in guided_experiments():
        spec = guided_spec(name)
        for method, answers in guided_answer_sets(name):
            entries.append(
                {
                    "experiment": f"{name}.{method}.{answers}",
                    "stage": f"{method}.{answers}",
                    "family": "guided",
                    "model": spec["guide"] if answers == "guide" else spec["decode"],
                    "dataset": spec["dataset"],
                    "kind": "accuracy",
                    "source": f"results/guided/{name}/{method}/{answers}/metrics.json",
                }
            )
    for name in guided_comparisons():
        baseline = guided_spec(comparison_spec(name)["baseline"])
        entries.append(
            {
                "experiment": name,
                "family": "guided",
                "model": baseline["guide"],
                "dataset": baseline["dataset"],
                "kind": "statistics",
                "source": f"results/guided/compare/{name}.json",
            }
        )
    return entries


def check_guided():
    for name in guided_experiments():
        spec = merged_settings("guided", GUIDED_DEFAULTS, guided_experiments()[name])  # before the metric is looked up
        for role in ("guide", "decode", "dataset"):
            if role not in spec:
                raise ValueError(f"config: guided.experiments.{name}: no {role} (set it there or in guided.defaults)")
            kind = "dataset" if role == "dataset" else "model"
            check_reference(f"guided.experiments.{name}.{role}", kind, spec[role])
        check_inference_gpus(f"guided.experiments.{name}", spec)
    for name, spec in guided_comparisons().items():
        for role in ("baseline", "variant"):
            experiment = spec[role]
            if experiment not in guided_experiments() or "guided" not in guided_spec(experiment)["methods"]:
                raise ValueError(
                    f"config: guided.comparisons.{name}.{role}: '{experiment}' is not a guided experiment with method 'guided'"
                )


check_guided()
