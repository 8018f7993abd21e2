# What every family's rules use: the settings merge, model and dataset paths, GPU resources and
# the params-function helper. Each family's own settings and input functions live beside its
# rules, in rules/functions/<family>.smk, which its rules/<family>.smk includes. Everything here
# reads `config`, so the rules stay declarative.

import json
import re
from dataclasses import asdict
from functools import cache
from pathlib import Path

from snakemake.logging import logger

from vlmflow.core.gpu_slots import available_devices
from vlmflow.core.offline import stay_offline
from vlmflow.core.settings import GenerationSettings, TrainSettings
from vlmflow.data.controls import CONTROLS

stay_offline()  # no network at run time: every job loads from local folders only

# All GPU rules ask for the same resources: one GPU (capped by `--resources gpu=N` locally,
# `--gpus` on SLURM), memory and time for a 7B model. A site tunes them per rule in its profile
# (`set-resources`), never in the rules. Running out of memory is handled inside the job (the
# batch is halved), so no rule retries by default; `snakemake --retries N` still applies.
GPU_RESOURCES = {"gpu": 1, "mem_mb": 32000, "runtime": 720}
# Which of the ready jobs start first (`priority:`): the data and built models every later job
# waits on (seconds each), then the long poles, training runs that other jobs wait on; on 2 cores a
# long run started last would leave one core idle at the end.
PRIORITY_PREPARE = 20
PRIORITY_TRAIN = 10


def warn_when_gpus_are_missing():
    """`--resources gpu=N` where no GPU is visible: say so once, before the GPU jobs run on the CPU."""
    asked = workflow.global_resources.get("gpu")
    asked = getattr(asked, "value", asked)
    if asked and not available_devices():
        logger.warning(
            f"--resources gpu={asked} asks for GPUs, but none is visible on this machine "
            "(torch sees no CUDA device; CUDA_VISIBLE_DEVICES / VLMFLOW_GPUS name none): "
            "every GPU job runs on the CPU."
        )


warn_when_gpus_are_missing()


def gpu_resources(gpus):
    """GPU_RESOURCES with `gpus` GPUs instead of one: `gpus` is a params function (the experiment's
    `gpus` setting), so one job gets all its devices (a data-parallel training job's ranks, or the
    GPUs a device map spreads a model over)."""
    return {**GPU_RESOURCES, "gpu": gpus}


# A model larger than one GPU: a device map over the job's GPUs within max_memory per device, the
# rest offloaded to disk beside the job's output (null / false: the whole model on one device).
PLACEMENT_DEFAULTS = {"device_map": None, "max_memory": None, "disk_offload": False}
# The GPUs each inference job holds: more than one only for a device map to spread a model over.
INFERENCE_GPUS = {"gpus": 1}

# The settings of a training run (finetune, pretrain): a job's `settings` param.
TRAIN_SETTING_KEYS = tuple(asdict(TrainSettings()))
# Generation settings every family that asks the models questions inherits (vqa, guided, probing).
GENERATION_DEFAULTS = {
    **asdict(GenerationSettings()),
    "variant": "official",
    "device": "auto",
    **PLACEMENT_DEFAULTS,
    **INFERENCE_GPUS,
    "threads": 2,
    "shards": 1,
    "shard_size": None,
    "tolerance": {"abs_tol": 0.0, "rel_tol": 0.0},
}
# Ten-annotator datasets use the VQA accuracy; single-answer datasets use exact match, and so do
# the generic formats, whose answer counts vary (an experiment's `metric` overrides it).
DEFAULT_METRIC = {
    "vqav2": "vqa_accuracy",
    "textvqa": "vqa_accuracy",
    "kvasir": "exact_match",
    "swap_pairs": "exact_match",
    "jsonl": "exact_match",
    "csv": "exact_match",
    "parquet": "exact_match",
    "hf_datasets": "exact_match",
}
# Formats whose images are embedded in the data file and extracted next to the cache.
EMBEDDED_IMAGES = {"kvasir", "swap_pairs", "parquet", "hf_datasets"}


def is_sharded(spec):
    """Whether an experiment's questions go through shard jobs and a gather (`shards` or `shard_size`)."""
    return spec["shards"] > 1 or bool(spec["shard_size"])


def shard_count(spec):
    """An experiment's number of shard jobs: `shards`, or with `shard_size` one per that many
    records of its dataset, counted once the dataset is cached (checkpoint count_records)."""
    if not spec["shard_size"]:
        return spec["shards"]
    counted = checkpoints.count_records.get(dataset=spec["dataset"]).output.counted
    records = json.loads(Path(counted).read_text())["records"]
    return max(1, -(-records // spec["shard_size"]))


def one_of(names):
    """A wildcard regex matching exactly these names (and nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def family_config(family):
    return config.get(family) or {}


def merged_settings(family, defaults, own, nested=()):
    """An experiment's full settings: built-in `defaults` < `<family>.defaults` < its `own`
    settings. Keys in `nested` hold mappings that are merged key by key across the levels."""
    levels = [defaults, family_config(family).get("defaults", {}), own]
    spec = {key: value for level in levels for key, value in level.items()}
    for key in nested:
        spec[key] = {k: v for level in levels for k, v in level.get(key, {}).items()}
    return spec


def setting(spec, key, wildcard="experiment"):
    """A params function: setting `key` of the job's experiment, `spec` mapping its name to its
    full settings (as `params: device=setting(vqa_experiment, "device")`)."""

    def job_setting(wildcards):
        return spec(wildcards[wildcard])[key]

    job_setting.__name__ = f"{spec.__name__}_{key}"
    return job_setting


def check_inference_gpus(where, spec):
    """A job given several GPUs must spread its model over them (device_map), or it wastes them."""
    if spec["gpus"] > 1 and not spec["device_map"]:
        raise ValueError(
            f"config: {where}: gpus: {spec['gpus']} without device_map would hold {spec['gpus']} GPUs and use "
            "one; set device_map: auto to spread the model over them, or use shards for more throughput"
        )


def placement(spec):
    """A params function: the job's experiment's device map settings (as `params:
    placement=placement(vqa_experiment)`), which scripts pass to load_vlm."""

    def job_placement(wildcards):
        settings = spec(wildcards.experiment)
        return {key: settings[key] for key in PLACEMENT_DEFAULTS}

    job_placement.__name__ = f"{spec.__name__}_placement"
    return job_placement


def finetune_experiments():
    """Fine-tuning experiments: each one's name is also a model name (its final checkpoint)."""
    return family_config("finetune").get("experiments", {})


def model_path(name):
    """A configured checkpoint, a built tiny one or hybrid, the final checkpoint of a fine-tuning
    experiment, or one scale of a model being pretrained."""
    if name in finetune_experiments():
        return trained_model_path(name)
    if name in pretrain_scale_models():
        return pretrain_scale_models()[name]
    spec = config["models"][name]
    return spec["path"] if "path" in spec else f"resources/models/{name}"


def trusts_remote_code(name):
    """Opt-in per model; a fine-tuned model inherits its base model's setting, a hybrid its
    language model's (whose code runs it)."""
    if name in finetune_experiments():
        return trusts_remote_code(finetune_spec(name)["model"])
    if name in pretrain_scale_models():
        return False  # built from a vlmflow family: transformers' own code
    spec = config["models"][name]
    if "hybrid" in spec:
        return trusts_remote_code(spec["hybrid"]["language"])
    return spec.get("trust_remote_code", False)


def control_of(dataset):
    """(the dataset, the control) of a control copy's name "<dataset>.<control>"
    (vlmflow.data.controls: "vqav2_val.blank_image"), else None."""
    base, _, control = dataset.rpartition(".")
    return (base, control) if control in CONTROLS and base in config["datasets"] else None


def dataset_config(dataset):
    """A dataset's config entry; a control copy has its dataset's."""
    control = control_of(dataset)
    return config["datasets"][control[0] if control else dataset]


def cache_outputs(dataset):
    """A dataset's cache and, for formats that embed them and control copies, its images."""
    files = {"cache": f"results/cache/{dataset}.jsonl"}
    if control_of(dataset) or dataset_config(dataset)["format"] in EMBEDDED_IMAGES:
        files["images"] = f"results/cache/{dataset}/images"
    return files


def dataset_metric(dataset):
    return DEFAULT_METRIC[dataset_config(dataset)["format"]]


def known_names():
    """What an experiment may name as its model or dataset."""
    return {"model": {*config["models"], *finetune_experiments()}, "dataset": set(config["datasets"])}


def check_reference(key, kind, value):
    """Fail at parse time, naming the config key, on an unknown model or dataset."""
    known = known_names()[kind]
    if value not in known:
        raise ValueError(f"config: {key}: unknown {kind} '{value}'; configured {kind}s: {', '.join(sorted(known))}")
