# Helpers and input functions shared by the rule files. Everything here reads `config`;
# the rules stay declarative.

import json
import re
from dataclasses import asdict
from functools import cache

from vlmflow.pruned_rows import keep_label
from vlmflow.foveated_sweeps import active_runs, is_skipped
from vlmflow.settings import FoveatedSettings, GenerationSettings, ImageSettings, PruningSettings, TrainSettings, batch_divisor

# A GPU job that fails (out of memory, typically) is retried with its batch divided by 2, then 4.
GPU_RETRIES = 2


def oom_batch_divisor(wildcards, attempt):
    return batch_divisor(attempt)


# Settings a VQA experiment inherits unless `vqa.defaults` or the experiment sets them.
GENERATION_DEFAULTS = {
    **asdict(GenerationSettings()),
    "variant": "official",
    "device": "auto",
    "threads": 2,
    "tolerance": {"abs_tol": 0.0, "rel_tol": 0.0},
}
# Ten-annotator datasets use the VQA accuracy; single-answer datasets use exact match.
DEFAULT_METRIC = {
    "vqav2": "vqa_accuracy",
    "textvqa": "vqa_accuracy",
    "kvasir": "exact_match",
    "swap_pairs": "exact_match",
}
# Upstream files of each dataset format (keys of the dataset's config entry).
FORMAT_INPUTS = {
    "vqav2": ["questions", "annotations", "images"],
    "textvqa": ["json", "images"],
    "kvasir": ["parquet"],
    "swap_pairs": ["tsv"],
}
# Formats whose images are embedded in the data file and extracted next to the cache.
EMBEDDED_IMAGES = {"kvasir", "swap_pairs"}


def one_of(names):
    """A wildcard regex matching exactly these names (and nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def datasets_of_format(fmt):
    return [name for name, spec in config["datasets"].items() if spec["format"] == fmt]


def built_models():
    return [name for name, spec in config["models"].items() if "build" in spec]


def hybrid_models():
    return [name for name, spec in config["models"].items() if "hybrid" in spec]


def model_path(name):
    """A configured checkpoint, a built tiny one or hybrid, or the final checkpoint of a training
    experiment."""
    if name in train_experiments():
        return trained_model_path(name)
    spec = config["models"][name]
    return spec["path"] if "path" in spec else f"resources/models/{name}"


def trusts_remote_code(name):
    """Opt-in per model; a trained model inherits its base model's setting."""
    if name in train_experiments():
        return trusts_remote_code(train_spec(name)["model"])
    spec = config["models"][name]
    if "hybrid" in spec:  # the language model's code runs it
        return trusts_remote_code(spec["hybrid"]["language"])
    return spec.get("trust_remote_code", False)


def hybrid_inputs(wildcards):
    spec = config["models"][wildcards.model]["hybrid"]
    return {"vision": model_path(spec["vision"]), "language": model_path(spec["language"])}


def dataset_inputs(wildcards):
    """The upstream files (and optional case list) a dataset's cache is made from."""
    spec = config["datasets"][wildcards.dataset]
    files = {key: spec[key] for key in FORMAT_INPUTS[spec["format"]]}
    if spec.get("case_list"):
        files["case_list"] = spec["case_list"]
    return files


def selection_params(wildcards):
    """Only the options that change which records are kept: editing them re-runs this cache."""
    spec = config["datasets"][wildcards.dataset]
    params = {key: spec.get(key) for key in ("limit", "subsample", "seed", "case_list")}
    if spec.get("question_types"):  # only when set, so other caches keep their provenance
        params["question_types"] = True
    return params


def cache_outputs(dataset):
    files = {"cache": f"results/cache/{dataset}.jsonl"}
    if config["datasets"][dataset]["format"] in EMBEDDED_IMAGES:
        files["images"] = f"results/cache/{dataset}/images"
    return files


def synth_params(fmt):
    """Size, seed and image size of one split of a synthetic dataset."""
    synthetic = config.get("synthetic", {})
    return lambda wildcards: {
        "n": synthetic["sizes"][fmt][wildcards.split],
        "seed": synthetic.get("seed", 0),
        "image_size": synthetic.get("image_size", 224),
    }


# The config is fixed once parsed; the experiment tables are built once, not once per job (a sweep
# of 10,000 experiments would otherwise rebuild them tens of thousands of times while planning).
@cache
def vqa_experiments():
    """The configured VQA experiments plus the before/after evaluations of training experiments."""
    return {**config["vqa"]["experiments"], **trained_vqa_experiments()}


# Any one path segment: the name is checked by vqa_experiment. Spelling out every experiment name
# as the wildcard's regex would put all of them into every output pattern Snakemake formats.
VQA_EXPERIMENT = r"[^/]+"


@cache
def vqa_experiment(name):
    """An experiment's full settings: built-in defaults < vqa.defaults < the experiment."""
    if name not in vqa_experiments():
        raise ValueError(f"results/vqa/{name}: no VQA experiment of that name (vqa.experiments, or a training experiment's eval)")
    spec = {**GENERATION_DEFAULTS, **config["vqa"].get("defaults", {}), **vqa_experiments()[name]}
    spec.setdefault("metric", DEFAULT_METRIC[config["datasets"][spec["dataset"]]["format"]])
    return spec


# ---- fine-tuning -------------------------------------------------------------------------------

# Settings a training experiment inherits unless `train.defaults` or the experiment sets them.
TRAIN_SETTING_KEYS = tuple(asdict(TrainSettings()))
TRAIN_DEFAULTS = {
    **asdict(TrainSettings()),
    "scales": [],
    "eval": [],
    "prompt": GENERATION_DEFAULTS["prompt"],
    "system_prompt": None,
    "device": "auto",
    "wandb": False,
    "threads": 2,
    "sanity": {"enabled": True, "samples": 64, "steps": 100, "threshold": 1.0},
}


def train_experiments():
    return config.get("train", {}).get("experiments", {})


def train_spec(name):
    """A training experiment's full settings: built-in defaults < train.defaults < the experiment."""
    defaults = config.get("train", {}).get("defaults", {})
    spec = {**TRAIN_DEFAULTS, **defaults, **train_experiments()[name]}
    spec["sanity"] = {**TRAIN_DEFAULTS["sanity"], **defaults.get("sanity", {}), **train_experiments()[name].get("sanity", {})}
    return spec


def train_settings(name):
    spec = train_spec(name)
    return {key: spec[key] for key in TRAIN_SETTING_KEYS}


def train_generation(name):
    """The prompt format trained on, which the evaluation of the trained model must reuse."""
    spec = train_spec(name)
    return {"prompt": spec["prompt"], "system_prompt": spec["system_prompt"]}


def train_stages(name):
    """The step counts kept as checkpoints ("scales"), ending with the final step."""
    spec = train_spec(name)
    return sorted({*spec["scales"], spec["steps"]})


def trained_model_path(name):
    return f"results/train/{name}/step-{train_spec(name)['steps']}"


def train_inputs(wildcards):
    spec = train_spec(wildcards.experiment)
    caches = [cache_outputs(dataset) for dataset in spec["datasets"]]
    return {
        "model": model_path(spec["model"]),
        "caches": [files["cache"] for files in caches],
        "images": [files["images"] for files in caches if "images" in files],
    }


def train_stage_inputs(wildcards):
    """A stage trains from the previous stage's state, after the sanity gate passed."""
    stages = train_stages(wildcards.experiment)
    step = int(wildcards.step)
    if step not in stages:
        raise ValueError(f"results/train/{wildcards.experiment}/step-{step}: not a configured scale {stages}")
    inputs = train_inputs(wildcards)
    if train_spec(wildcards.experiment)["sanity"]["enabled"]:
        inputs["sanity"] = f"results/train/{wildcards.experiment}/sanity.json"
    earlier = [s for s in stages if s < step]
    if earlier:
        inputs["previous"] = f"results/train/{wildcards.experiment}/step-{earlier[-1]}"
    return inputs


def trained_vqa_experiments():
    """For every training experiment and eval dataset: the base model and the trained model,
    with the prompt format trained on, as two VQA experiments."""
    derived = {}
    for name, spec in train_experiments().items():
        prompt = train_generation(name)
        for dataset in spec.get("eval", []):
            derived[f"{name}.base.{dataset}"] = {"model": spec["model"], "dataset": dataset, **prompt}
            derived[f"{name}.{dataset}"] = {"model": name, "dataset": dataset, **prompt}
    return derived


def infer_inputs(wildcards):
    spec = vqa_experiment(wildcards.experiment)
    return {"model": model_path(spec["model"]), **cache_outputs(spec["dataset"])}


def generation_params(wildcards):
    spec = vqa_experiment(wildcards.experiment)
    return {key: spec[key] for key in asdict(GenerationSettings())}


# ---- guided visual-token pruning ----------------------------------------------------------------

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
    "device": "auto",
    "threads": GENERATION_DEFAULTS["threads"],
}
PRUNING_KEYS = tuple(asdict(PruningSettings()))
BASELINE_METHODS = ("fastv", "random")


def guided_experiments():
    return config.get("guided", {}).get("experiments", {})


def guided_spec(name):
    """A guided experiment's full settings: built-in defaults < guided.defaults < the experiment."""
    spec = {**GUIDED_DEFAULTS, **config.get("guided", {}).get("defaults", {}), **guided_experiments()[name]}
    spec.setdefault("metric", DEFAULT_METRIC[config["datasets"][spec["dataset"]]["format"]])
    return spec


def pruning_params(wildcards):
    spec = guided_spec(wildcards.experiment)
    return {**{key: spec[key] for key in PRUNING_KEYS if key != "method"}, "method": wildcards.method}


def guided_generation(wildcards):
    spec = guided_spec(wildcards.experiment)
    return {key: spec[key] for key in ("batch_size", "max_new_tokens", "reasoning_tokens", "chunk_batches", "prompt", "system_prompt")}


def guided_run_inputs(wildcards):
    spec = guided_spec(wildcards.experiment)
    inputs = {"decode": model_path(spec["decode"]), **cache_outputs(spec["dataset"])}
    if wildcards.method == "guided":
        inputs["guide"] = model_path(spec["guide"])
    return inputs


def guided_answer_sets(name):
    """(method, answers) pairs of an experiment: each method at each keep ratio, and the guide alone."""
    spec = guided_spec(name)
    pairs = [(method, f"keep-{keep_label(r)}") for method in spec["methods"] for r in spec["keep_ratios"]]
    return pairs + ([("guided", "guide")] if "guided" in spec["methods"] else [])


def guided_metrics(name):
    return [f"results/guided/{name}/{method}/{answers}/metrics.json" for method, answers in guided_answer_sets(name)]


def guided_outputs():
    """Per experiment the retention table and plot, and the early-exit sweep when it has a guide;
    per comparison its attention statistics."""
    files = []
    for name in guided_experiments():
        files.append(f"results/guided/{name}/accuracy_vs_retention.png")
        if "guided" in guided_spec(name)["methods"]:
            files.append(f"results/guided/{name}/early_exit.png")
    files += [f"results/guided/compare/{name}.md" for name in config.get("guided", {}).get("comparisons", {})]
    return files


def comparison_spec(name):
    """A comparison of two guided experiments' guide attention, at one keep ratio of the decode
    model (default: the smallest both ran)."""
    spec = dict(config["guided"]["comparisons"][name])
    if "keep_ratio" not in spec:
        spec["keep_ratio"] = min(set(guided_spec(spec["baseline"])["keep_ratios"]) & set(guided_spec(spec["variant"])["keep_ratios"]))
    return spec


def comparison_inputs(wildcards):
    spec = comparison_spec(wildcards.comparison)
    return {
        f"{role}_{kind}": f"results/guided/{spec[role]}/guided/{name}"
        for role in ("baseline", "variant")
        for kind, name in (("rows", "rows.jsonl"), ("importance", "importance.parquet"))
    }


# ---- hidden-state probing ------------------------------------------------------------------------

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
    "device": "auto",
    "threads": GENERATION_DEFAULTS["threads"],
}

PROBING_TAGS = ("all", "both_correct")  # every consistency over all pairs and over both-correct ones


def probing_experiments():
    return config.get("probing", {}).get("experiments", {})


def probing_spec(name):
    """A probing experiment's full settings: built-in defaults < probing.defaults < the experiment;
    with `train`, the prompt format trained on."""
    spec = {**PROBING_DEFAULTS, **config.get("probing", {}).get("defaults", {}), **probing_experiments()[name]}
    if "train" in spec:
        spec |= train_generation(spec["train"])
    return spec


def probing_scales(name):
    """{scale: (model label, checkpoint path)} in order. With `train`: "vanilla" (the base model)
    and "step-<n>" for every checkpoint the training experiment keeps; else the `scales` mapping
    of scale names to configured models."""
    spec = probing_spec(name)
    if "train" in spec:
        train = spec["train"]
        base = train_spec(train)["model"]
        scales = {"vanilla": (base, model_path(base))}
        for step in train_stages(train):
            scales[f"step-{step}"] = (f"{train}/step-{step}", f"results/train/{train}/step-{step}")
        return scales
    return {scale: (model, model_path(model)) for scale, model in spec["scales"].items()}


def probing_scale_names():
    return sorted({scale for name in probing_experiments() for scale in probing_scales(name)})


def probing_extract_inputs(wildcards):
    spec = probing_spec(wildcards.experiment)
    scales = probing_scales(wildcards.experiment)
    if wildcards.scale not in scales:
        raise ValueError(f"results/probing/{wildcards.experiment}: '{wildcards.scale}' is not one of its scales {list(scales)}")
    inputs = {"model": scales[wildcards.scale][1], **cache_outputs(spec["dataset"])}
    boxes = config["datasets"][spec["dataset"]].get("boxes")
    if boxes:
        inputs["boxes"] = boxes
    return inputs


def probing_generation(wildcards):
    spec = probing_spec(wildcards.experiment)
    return {key: spec[key] for key in ("batch_size", "max_new_tokens", "prompt", "system_prompt")}


def probing_scale_model(wildcards):
    """Whether the scale's model opts in to remote code (every scale of a training experiment shares
    its base model's choice)."""
    spec = probing_spec(wildcards.experiment)
    return trusts_remote_code(spec["train"] if "train" in spec else spec["scales"][wildcards.scale])


def probing_analysis(wildcards):
    """The per-scale files the merge reads, for every scale."""
    root = f"results/probing/{wildcards.experiment}"
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


@cache
def summary_entries():
    """One entry per metrics source that goes into results/summary.csv."""
    entries = [
        {
            "experiment": name,
            "family": "vqa",
            "model": vqa_experiment(name)["model"],
            "dataset": vqa_experiment(name)["dataset"],
            "kind": "accuracy",
            "source": f"results/vqa/{name}/metrics.json",
        }
        for name in config["vqa"]["experiments"]
    ]
    for name, spec in train_experiments().items():
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
            for model, experiment in ((spec["model"], f"{name}.base.{dataset}"), (name, f"{name}.{dataset}")):
                entries.append(
                    {
                        "experiment": name,
                        "family": "finetune",
                        "model": model,
                        "dataset": dataset,
                        "kind": "accuracy",
                        "source": f"results/vqa/{experiment}/metrics.json",
                    }
                )
    for name in guided_experiments():
        spec = guided_spec(name)
        for method, answers in guided_answer_sets(name):
            entries.append(
                {
                    "experiment": f"{name}.{method}.{answers}",
                    "family": "guided",
                    "model": spec["guide"] if answers == "guide" else spec["decode"],
                    "dataset": spec["dataset"],
                    "kind": "accuracy",
                    "source": f"results/guided/{name}/{method}/{answers}/metrics.json",
                }
            )
    for name in config.get("guided", {}).get("comparisons", {}):
        spec = comparison_spec(name)
        entries.append(
            {
                "experiment": name,
                "family": "guided",
                "model": guided_spec(spec["baseline"])["guide"],
                "dataset": guided_spec(spec["baseline"])["dataset"],
                "kind": "statistics",
                "source": f"results/guided/compare/{name}.json",
            }
        )
    for name in probing_experiments():
        entries.append(
            {
                "experiment": name,
                "family": "probing",
                "model": "+".join(label for label, _ in probing_scales(name).values()),
                "dataset": probing_spec(name)["dataset"],
                "kind": "probing",
                "source": f"results/probing/{name}/csv/summary.csv",
            }
        )
    if foveated_runs():  # one table: which runs exist is decided while the workflow runs
        entries.append({"experiment": "foveated", "family": "foveated", "model": None, "dataset": None,
                        "kind": "table", "source": "results/foveated/summary.csv"})  # fmt: skip
    if conditioning_experiments() or conditioning_analysis():
        entries.append({"experiment": "conditioning", "family": "vl_conditioning", "model": None, "dataset": None,
                        "kind": "table", "source": "results/conditioning/summary.csv"})  # fmt: skip
    return entries


def summary_inputs():
    """What the summary waits for: each metrics file, and each training experiment's final stage
    (its log lives inside that directory output)."""
    return [entry.get("requires", entry["source"]) for entry in summary_entries()]


def ablation_experiments(name):
    return config["ablations"][name]["experiments"]


def ablation_tables():
    return [f"results/ablations/{name}.md" for name in config.get("ablations", {})]


def check_references():
    """Fail at parse time, naming the key, when an experiment names an unknown model or dataset."""
    known = {"model": {*config["models"], *train_experiments()}, "dataset": set(config["datasets"])}
    for name in set(config["models"]) & set(train_experiments()):
        raise ValueError(f"config: train.experiments.{name}: the name is already a model in `models`")

    def check(key, kind, value):
        if value not in known[kind]:
            raise ValueError(
                f"config: {key}: unknown {kind} '{value}'; configured {kind}s: {', '.join(sorted(known[kind]))}"
            )

    for name, spec in config["vqa"]["experiments"].items():
        check(f"vqa.experiments.{name}.model", "model", spec["model"])
        check(f"vqa.experiments.{name}.dataset", "dataset", spec["dataset"])
    for name, spec in config.get("ablations", {}).items():
        for experiment in spec["experiments"]:
            if experiment not in vqa_experiments():
                raise ValueError(f"config: ablations.{name}: unknown VQA experiment '{experiment}'")
    for name, spec in config["models"].items():
        for role in ("vision", "language"):
            if "hybrid" in spec:
                check(f"models.{name}.hybrid.{role}", "model", spec["hybrid"][role])
    for name in guided_experiments():
        spec = guided_spec(name)
        for role in ("guide", "decode"):
            if role not in spec:
                raise ValueError(f"config: guided.experiments.{name}: no {role} model (set it there or in guided.defaults)")
            check(f"guided.experiments.{name}.{role}", "model", spec[role])
        check(f"guided.experiments.{name}.dataset", "dataset", spec["dataset"])
    for name, spec in config.get("guided", {}).get("comparisons", {}).items():
        for role in ("baseline", "variant"):
            experiment = spec[role]
            if experiment not in guided_experiments() or "guided" not in guided_spec(experiment)["methods"]:
                raise ValueError(f"config: guided.comparisons.{name}.{role}: '{experiment}' is not a guided experiment with method 'guided'")
    for name, spec in probing_experiments().items():
        check(f"probing.experiments.{name}.dataset", "dataset", spec["dataset"])
        if config["datasets"][spec["dataset"]]["format"] != "swap_pairs":
            raise ValueError(f"config: probing.experiments.{name}.dataset: '{spec['dataset']}' is not a swap_pairs dataset")
        if ("train" in spec) == ("scales" in spec):
            raise ValueError(f"config: probing.experiments.{name}: set exactly one of `train` or `scales`")
        if "train" in spec and spec["train"] not in train_experiments():
            raise ValueError(f"config: probing.experiments.{name}.train: unknown training experiment '{spec['train']}'")
        for scale, model in spec.get("scales", {}).items():
            check(f"probing.experiments.{name}.scales.{scale}", "model", model)
    for name, spec in train_experiments().items():
        check(f"train.experiments.{name}.model", "model", spec["model"])
        for key in ("datasets", "eval"):
            for dataset in spec.get(key, []):
                check(f"train.experiments.{name}.{key}", "dataset", dataset)


check_references()


# ---- foveated VLM (seed 001) ----------------------------------------------------------------------

# What a foveated run inherits unless `foveated.defaults` or the run sets it: the training settings
# (FoveatedSettings) plus where its parts and data come from and how it runs.
FOVEATED_DEFAULTS = {**asdict(FoveatedSettings()), "device": "auto", "threads": 2}
FOVEATED_WORKFLOW_KEYS = ("model", "data", "device", "threads")


def foveated():
    return config.get("foveated", {})


def foveated_runs():
    return list(foveated().get("runs", {}))


def foveated_sweeps():
    return foveated().get("sweeps", {})


@cache
def foveated_spec(run):
    """A run's full settings: built-in defaults < foveated.defaults < the run."""
    spec = {**FOVEATED_DEFAULTS, **foveated().get("defaults", {}), **foveated()["runs"][run]}
    spec["mix"] = tuple(sorted(dict(spec["mix"]).items()))
    spec["freeze"] = tuple(spec["freeze"])
    return spec


def foveated_settings(run):
    """The FoveatedSettings fields of a run, for the training and evaluation scripts."""
    return {k: v for k, v in foveated_spec(run).items() if k not in FOVEATED_WORKFLOW_KEYS}


def foveated_built_models():
    return [name for name, spec in foveated().get("models", {}).items() if "build" in spec]


def foveated_parts(run):
    """The DINOv2 and causal-LM checkpoint folders of a run's model."""
    name = foveated_spec(run)["model"]
    spec = foveated()["models"][name]
    if "build" in spec:
        return {"vision": f"resources/models/{name}/vision", "language": f"resources/models/{name}/language"}
    return {"vision": spec["vision"], "language": spec["language"]}


def foveated_train_inputs(wildcards):
    """The model's parts (a built model's one folder holds both) and the run's train / val files."""
    spec = foveated_spec(wildcards.run)
    built = spec["model"] in foveated_built_models()
    parts = [f"resources/models/{spec['model']}"] if built else list(foveated_parts(wildcards.run).values())
    return {"parts": parts, **foveated()["data"][spec["data"]]}


def foveated_sweep_metric(sweep):
    return foveated_sweeps()[sweep].get("metric", "val_loss")


def foveated_decision(sweep):
    """A decided sweep's decision.json (its checkpoint job runs first)."""
    return checkpoints.decide_foveated_sweep.get(sweep=sweep).output.decision


def foveated_sweep_skipped(name):
    """Whether a sweep is skipped on another sweep's outcome (waits for that decision)."""
    sweep = foveated_sweeps()[name]
    if not sweep.get("skip_when"):
        return False
    other = sweep["skip_when"]["sweep"]
    with open(foveated_decision(other)) as handle:
        return is_skipped(sweep, {other: json.load(handle)})


def foveated_skipped():
    return {name for name in foveated_sweeps() if foveated_sweep_skipped(name)}


def foveated_active_runs():
    return active_runs(foveated_runs(), foveated_sweeps(), foveated_skipped())


def foveated_run_files(runs, *names):
    return [f"results/foveated/{run}/{name}" for run in runs for name in names]


def foveated_sweep_inputs(wildcards):
    sweep = foveated_sweeps()[wildcards.sweep]
    runs = [] if foveated_sweep_skipped(wildcards.sweep) else sweep["runs"]
    inputs = {"files": foveated_run_files(runs, "eval.json", "log.jsonl", "evals.jsonl")}
    if sweep.get("skip_when"):
        inputs["condition"] = f"results/foveated/sweeps/{sweep['skip_when']['sweep']}/decision.json"
    return inputs


def foveated_report_inputs(wildcards):
    skipped = foveated_skipped()
    return {
        "files": foveated_run_files(foveated_active_runs(), "eval.json", "log.jsonl", "evals.jsonl"),
        "decisions": [f"results/foveated/sweeps/{s}/decision.json" for s in foveated_sweeps() if s not in skipped],
        "attention": f"results/foveated/{foveated_heatmap_run()}/attention",
    }


def foveated_heatmap_run():
    """`foveated.heatmap_run`, else the first run with a query (whose attention there is to draw)."""
    chosen = foveated().get("heatmap_run")
    queried = [r for r in foveated_runs() if foveated_spec(r)["architecture"] == "foveated"]
    if not (chosen or queried):
        raise ValueError("config: foveated: the attention heatmaps need a run with architecture foveated")
    return chosen or queried[0]


def foveated_outputs():
    """The sweeps' tables and the report; also each run that no sweep's decision can skip, so a
    dry run lists those before any decision exists."""
    if not foveated_runs():
        return []
    conditional = {name for name, sweep in foveated_sweeps().items() if sweep.get("skip_when")}
    certain = active_runs(foveated_runs(), foveated_sweeps(), conditional)
    sweeps = [f"results/foveated/sweeps/{name}/table.md" for name in foveated_sweeps()]
    return sweeps + foveated_run_files(certain, "eval.json") + ["results/foveated/summary.csv"]


def check_foveated():
    """Fail at parse time, naming the key, on a reference to an unknown model, data set, run or sweep."""
    fov = foveated()
    for run in foveated_runs():
        spec = foveated_spec(run)
        for key, table in (("model", "models"), ("data", "data")):
            if spec[key] not in fov.get(table, {}):
                raise ValueError(f"config: foveated.runs.{run}.{key}: unknown '{spec[key]}'; configured: {', '.join(fov.get(table, {}))}")
    for name, sweep in foveated_sweeps().items():
        for run in sweep["runs"]:
            if run not in fov.get("runs", {}):
                raise ValueError(f"config: foveated.sweeps.{name}: unknown run '{run}'")
        condition = sweep.get("skip_when")
        if condition and (condition["sweep"] not in foveated_sweeps() or condition["sweep"] == name):
            raise ValueError(f"config: foveated.sweeps.{name}.skip_when: '{condition['sweep']}' is not another sweep")
        if condition and condition["winner"] not in foveated_sweeps()[condition["sweep"]]["runs"]:
            raise ValueError(f"config: foveated.sweeps.{name}.skip_when: '{condition['winner']}' is not a run of sweep {condition['sweep']}")
    heatmap = fov.get("heatmap_run")
    if heatmap and heatmap not in fov.get("runs", {}):
        raise ValueError(f"config: foveated.heatmap_run: unknown run '{heatmap}'")


check_foveated()


# ---- VL conditioning (seed 003) -------------------------------------------------------------------

# What an experiment inherits unless `conditioning.defaults` or the experiment sets it.
CONDITIONING_DEFAULTS = {**asdict(ImageSettings()), "device": "auto", "image": None}


def conditioning():
    return config.get("conditioning", {})


def conditioning_experiments():
    return list(conditioning().get("experiments", {}))


def conditioning_analysis():
    return conditioning().get("analysis")


def conditioning_built_models():
    return [name for name, spec in conditioning().get("models", {}).items() if "build" in spec]


@cache
def conditioning_experiment(name):
    """An experiment's settings (built-in < conditioning.defaults < the experiment) with each
    output's full recipe (defaults' recipe < the experiment's recipe < the output)."""
    defaults, own = conditioning().get("defaults", {}), conditioning()["experiments"][name]
    spec = {**CONDITIONING_DEFAULTS, **defaults, **own}
    recipe = {**defaults.get("recipe", {}), **own.get("recipe", {})}
    spec["outputs"] = {out: {**recipe, **settings} for out, settings in own["outputs"].items()}
    spec.pop("recipe", None)
    for key in ("model", "prompt"):
        if key not in spec:
            raise ValueError(f"config: conditioning.experiments.{name}: no {key} (set it there or in conditioning.defaults)")
    return spec


def conditioning_model(name, where):
    """A conditioning model's pipeline and VLM folders (a built model's one folder holds both)
    and whether its VLM may run remote code."""
    models = conditioning().get("models", {})
    if name not in models:
        raise ValueError(f"config: {where}: model {name!r} is not in conditioning.models ({', '.join(models)})")
    spec = models[name]
    folders = {key: f"resources/models/{name}/{key}" for key in ("pipeline", "vlm")} if "build" in spec else spec
    return {"pipeline": folders["pipeline"], "vlm": folders["vlm"], "trust_remote_code": spec.get("trust_remote_code", False)}


def conditioning_model_inputs(name, image, where):
    paths = conditioning_model(name, where)
    model = [f"resources/models/{name}"] if name in conditioning_built_models() else [paths["pipeline"], paths["vlm"]]
    return {"model": model, **({"image": image} if image else {})}


def conditioning_experiment_inputs(wildcards):
    spec = conditioning_experiment(wildcards.experiment)
    return conditioning_model_inputs(spec["model"], spec["image"], f"conditioning.experiments.{wildcards.experiment}")


def conditioning_analysis_inputs(wildcards):
    spec = conditioning_analysis()
    return conditioning_model_inputs(spec["model"], spec.get("image"), "conditioning.analysis")


def conditioning_outputs():
    """Each experiment's metadata and grid, the dimension analysis, the study's summary rows."""
    files = [f"results/conditioning/{name}/{f}" for name in conditioning_experiments()
             for f in ("metadata.json", "comparison_grid.png")]  # fmt: skip
    if conditioning_analysis():
        files.append("results/conditioning/dimensions/dimensions.png")
    return files + (["results/conditioning/summary.csv"] if files else [])
