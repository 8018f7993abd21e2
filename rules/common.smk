# Helpers and input functions shared by the rule files. Everything here reads `config`;
# the rules stay declarative.

import re

# Generation settings an experiment inherits unless `vqa.defaults` or the experiment sets them.
GENERATION_DEFAULTS = {
    "batch_size": 8,
    "max_new_tokens": 10,
    "chunk_batches": 4,
    "prompt": "{question}\nAnswer the question using a single word or phrase.",
    "system_prompt": None,
    "variant": "official",
    "device": "auto",
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


def model_path(name):
    spec = config["models"][name]
    return spec["path"] if "path" in spec else f"resources/models/{name}"


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
    return {key: spec.get(key) for key in ("limit", "subsample", "seed", "case_list")}


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


def vqa_experiment(name):
    """An experiment's full settings: built-in defaults < vqa.defaults < the experiment."""
    spec = {**GENERATION_DEFAULTS, **config["vqa"].get("defaults", {}), **config["vqa"]["experiments"][name]}
    spec.setdefault("metric", DEFAULT_METRIC[config["datasets"][spec["dataset"]]["format"]])
    return spec


def infer_inputs(wildcards):
    spec = vqa_experiment(wildcards.experiment)
    return {"model": model_path(spec["model"]), **cache_outputs(spec["dataset"])}


def generation_params(wildcards):
    spec = vqa_experiment(wildcards.experiment)
    keys = ("batch_size", "max_new_tokens", "chunk_batches", "prompt", "system_prompt")
    return {key: spec[key] for key in keys}


def summary_entries():
    """One entry per experiment whose metrics go into results/summary.csv."""
    return [
        {
            "experiment": name,
            "family": "vqa",
            "model": vqa_experiment(name)["model"],
            "dataset": vqa_experiment(name)["dataset"],
            "source": f"results/vqa/{name}/metrics.json",
        }
        for name in config["vqa"]["experiments"]
    ]


def check_references():
    """Fail at parse time, naming the key, when an experiment names an unknown model or dataset."""
    for name, spec in config["vqa"]["experiments"].items():
        for kind in ("model", "dataset"):
            known = config[f"{kind}s"]
            if spec[kind] not in known:
                raise ValueError(
                    f"config: vqa.experiments.{name}.{kind}: unknown {kind} '{spec[kind]}'; "
                    f"configured {kind}s: {', '.join(sorted(known))}"
                )


check_references()
