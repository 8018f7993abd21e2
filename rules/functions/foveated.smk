# Settings and input functions of the foveated-VLM rules (rules/foveated.smk).

import json

from vlmflow.core.settings import FoveatedSettings
from vlmflow.foveated.sweeps import active_runs, is_skipped

# What a foveated run inherits unless `foveated.defaults` or the run sets it: the training settings
# (FoveatedSettings) plus where its parts and data come from and how it runs.
FOVEATED_DEFAULTS = {**asdict(FoveatedSettings()), "device": "auto", "threads": 2, "gpus": 1}
FOVEATED_WORKFLOW_KEYS = ("model", "data", "device", "threads", "gpus")
RUN_FILES = ("eval.json", "log.jsonl", "evals.jsonl")


def foveated():
    return family_config("foveated")


def foveated_runs():
    return list(foveated().get("runs", {}))


def foveated_sweeps():
    return foveated().get("sweeps", {})


@cache
def foveated_spec(run):
    """A run's full settings: built-in defaults < foveated.defaults < the run."""
    return frozen_settings(merged_settings("foveated", FOVEATED_DEFAULTS, foveated()["runs"][run]))


def frozen_settings(spec):
    """`mix` and `freeze` as tuples, as FoveatedSettings holds them (and @cache can hash them)."""
    return {**spec, "mix": tuple(sorted(dict(spec["mix"]).items())), "freeze": tuple(spec["freeze"])}


def foveated_settings(wildcards):
    """The FoveatedSettings fields of a run, for the training and evaluation scripts."""
    return {k: v for k, v in foveated_spec(wildcards.run).items() if k not in FOVEATED_WORKFLOW_KEYS}


def foveated_gpus(wildcards):
    """Processes (and GPUs) of a run's training job: data-parallel when more than one."""
    return foveated_spec(wildcards.run)["gpus"]


def foveated_train_threads(wildcards):
    """`threads` per process, for each of the training job's `gpus` processes."""
    spec = foveated_spec(wildcards.run)
    return spec["threads"] * spec["gpus"]


def foveated_priority(wildcards):
    """A run of a sweep that decides whether another sweep runs trains first (as train_model does):
    the other sweep's runs wait on its decision."""
    sweeps = foveated_sweeps()
    deciding = {sweep["skip_when"]["sweep"] for sweep in sweeps.values() if sweep.get("skip_when")}
    return PRIORITY_TRAIN if any(wildcards.run in sweeps[name]["runs"] for name in deciding) else 0


def foveated_built_models():
    return [name for name, spec in foveated().get("models", {}).items() if "build" in spec]


def foveated_build_spec(wildcards):
    return foveated()["models"][wildcards.model]["build"]


def foveated_parts(wildcards):
    """The DINOv2 and causal-LM checkpoint folders of a run's model."""
    name = foveated_spec(wildcards.run)["model"]
    spec = foveated()["models"][name]
    if "build" in spec:
        return {"vision": f"resources/models/{name}/vision", "language": f"resources/models/{name}/language"}
    return {"vision": spec["vision"], "language": spec["language"]}


def foveated_train_inputs(wildcards):
    """The model's parts (a built model's one folder holds both) and the run's train / val files."""
    spec = foveated_spec(wildcards.run)
    built = spec["model"] in foveated_built_models()
    parts = [f"resources/models/{spec['model']}"] if built else list(foveated_parts(wildcards).values())
    return {"parts": parts, **foveated()["data"][spec["data"]]}


def foveated_val(wildcards):
    return foveated()["data"][foveated_spec(wildcards.run)["data"]]["val"]


def sweep_runs(wildcards):
    return foveated_sweeps()[wildcards.sweep]["runs"]


def sweep_evals(wildcards):
    return foveated_run_files(sweep_runs(wildcards), "evals.jsonl")


def sweep_metric(wildcards):
    return foveated_sweeps()[wildcards.sweep].get("metric", "val_loss")


def sweep_skip_when(wildcards):
    return foveated_sweeps()[wildcards.sweep].get("skip_when")


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


def sweep_skipped(wildcards):
    return foveated_sweep_skipped(wildcards.sweep)


def foveated_skipped():
    return {name for name in foveated_sweeps() if foveated_sweep_skipped(name)}


def skipped_sweeps(wildcards):
    return sorted(foveated_skipped())


def foveated_active_runs():
    return active_runs(foveated_runs(), foveated_sweeps(), foveated_skipped())


def active_foveated_runs(wildcards):
    return foveated_active_runs()


def active_run_specs(wildcards):
    return {run: {key: foveated_spec(run)[key] for key in ("model", "data")} for run in foveated_active_runs()}


def foveated_run_files(runs, *names):
    return [f"results/foveated/{run}/{name}" for run in runs for name in names]


def foveated_sweep_inputs(wildcards):
    sweep = foveated_sweeps()[wildcards.sweep]
    runs = [] if foveated_sweep_skipped(wildcards.sweep) else sweep["runs"]
    inputs = {"files": foveated_run_files(runs, *RUN_FILES)}
    if sweep.get("skip_when"):
        inputs["condition"] = f"results/foveated/sweeps/{sweep['skip_when']['sweep']}/decision.json"
    return inputs


def foveated_report_inputs(wildcards):
    skipped = foveated_skipped()
    return {
        "files": foveated_run_files(foveated_active_runs(), *RUN_FILES),
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


def foveated_summary_entries():
    """One table: which runs exist is decided while the workflow runs."""
    if not foveated_runs():
        return []
    return [
        {
            "experiment": "foveated",
            "family": "foveated",
            "model": None,
            "dataset": None,
            "kind": "table",
            "source": "results/foveated/summary.csv",
        }
    ]


def check_foveated():
    """Fail at parse time, naming the key, on a reference to an unknown model, data set, run or sweep."""
    fov = foveated()
    for run in foveated_runs():
        spec = foveated_spec(run)
        if spec["batch_size"] % spec["gpus"]:
            raise ValueError(
                f"config: foveated.runs.{run}: gpus: {spec['gpus']} needs batch_size divisible by {spec['gpus']} "
                f"(each process takes batch_size / gpus samples of a step), got batch_size {spec['batch_size']}"
            )
        for key, table in (("model", "models"), ("data", "data")):
            if spec[key] not in fov.get(table, {}):
                raise ValueError(
                    f"config: foveated.runs.{run}.{key}: unknown '{spec[key]}'; configured: {', '.join(fov.get(table, {}))}"
                )
    for name, sweep in foveated_sweeps().items():
        for run in sweep["runs"]:
            if run not in fov.get("runs", {}):
                raise ValueError(f"config: foveated.sweeps.{name}: unknown run '{run}'")
        condition = sweep.get("skip_when")
        if condition and (condition["sweep"] not in foveated_sweeps() or condition["sweep"] == name):
            raise ValueError(f"config: foveated.sweeps.{name}.skip_when: '{condition['sweep']}' is not another sweep")
        if condition and condition["winner"] not in foveated_sweeps()[condition["sweep"]]["runs"]:
            raise ValueError(
                f"config: foveated.sweeps.{name}.skip_when: '{condition['winner']}' is not a run of sweep {condition['sweep']}"
            )
    heatmap = fov.get("heatmap_run")
    if heatmap and heatmap not in fov.get("runs", {}):
        raise ValueError(f"config: foveated.heatmap_run: unknown run '{heatmap}'")


check_foveated()
