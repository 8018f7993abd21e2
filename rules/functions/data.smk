# Settings and input functions of the dataset caching rules.

from glob import glob

from vlmflow.data.question_types import QuestionRule

# Upstream files of each dataset format (keys of the dataset's config entry).
FORMAT_INPUTS = {
    "vqav2": ["questions", "annotations", "images"],
    "textvqa": ["json", "images"],
    "kvasir": ["parquet"],
    "swap_pairs": ["tsv"],
    "jsonl": ["jsonl"],
    "csv": ["csv"],
    "hf_datasets": ["path"],
    "parquet": ["parquet"],
}


def check_question_rules():
    """A dataset's own question-type rules compile and name known types (the key in the error)."""
    for name, spec in config["datasets"].items():
        if isinstance(spec.get("question_types"), list):
            QuestionRule.from_config(spec["question_types"], f"datasets.{name}.question_types")


def datasets_of_format(fmt):
    return [name for name, spec in config["datasets"].items() if spec["format"] == fmt]


def upstream_files(path):
    """A configured path, or the sorted matches of a glob pattern (parquet shards: `data/validation-*.parquet`),
    as `vlmflow.data.hub.parquet_files` reads them; a pattern matching nothing stays as it is, for Snakemake
    to name as a missing input."""
    if Path(path).exists() or not any(char in path for char in "*?["):
        return path
    return sorted(glob(path)) or path


def dataset_inputs(wildcards):
    """The upstream files (and optional case list) a dataset's cache is made from."""
    spec = config["datasets"][wildcards.dataset]
    files = {key: upstream_files(spec[key]) for key in FORMAT_INPUTS[spec["format"]]}
    if spec.get("case_list"):
        files["case_list"] = spec["case_list"]
    return files


def selection_params(wildcards):
    """Only the options that change which records are kept (or what they hold): editing them re-runs
    this cache."""
    spec = config["datasets"][wildcards.dataset]
    params = {key: spec.get(key) for key in ("limit", "subsample", "seed", "case_list")}
    if spec.get("question_types"):  # only when set, so other caches keep their provenance
        params["question_types"] = spec["question_types"]  # true, or the config's rules
    if spec.get("columns"):  # the generic formats' column names
        params["columns"] = spec["columns"]
    return params


check_question_rules()
