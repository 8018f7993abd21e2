# Settings and input functions of the VL-conditioning rules (rules/conditioning.smk).

from vlmflow.core.settings import ImageSettings

# What an experiment inherits unless `conditioning.defaults` or the experiment sets it.
CONDITIONING_DEFAULTS = {**asdict(ImageSettings()), "device": "auto", "threads": 2, "image": None}


def conditioning():
    return family_config("conditioning")


def conditioning_experiments():
    return list(conditioning().get("experiments", {}))


def conditioning_analysis():
    return conditioning().get("analysis")


def conditioning_built_models():
    return [name for name, spec in conditioning().get("models", {}).items() if "build" in spec]


def conditioning_build_spec(wildcards):
    return conditioning()["models"][wildcards.model]["build"]


@cache
def conditioning_experiment(name):
    """An experiment's settings (built-in < conditioning.defaults < the experiment) with each
    output's full recipe (defaults' recipe < the experiment's recipe < the output)."""
    own = conditioning()["experiments"][name]
    spec = merged_settings("conditioning", CONDITIONING_DEFAULTS, own, nested=("recipe",))
    recipe = spec.pop("recipe")
    spec["outputs"] = {out: {**recipe, **settings} for out, settings in own["outputs"].items()}
    for key in ("model", "prompt"):
        if key not in spec:
            raise ValueError(
                f"config: conditioning.experiments.{name}: no {key} (set it there or in conditioning.defaults)"
            )
    return spec


def conditioning_job_params(spec):
    """Settings as a job's params: all but threads, which change no result (so rerun nothing)."""
    return {k: v for k, v in spec.items() if k != "threads"}


def conditioning_spec(wildcards):
    return conditioning_job_params(conditioning_experiment(wildcards.experiment))


def conditioning_model(name, where):
    """A conditioning model's pipeline and VLM folders (a built model's one folder holds both)
    and whether its VLM may run remote code."""
    models = conditioning().get("models", {})
    if name not in models:
        raise ValueError(f"config: {where}: model {name!r} is not in conditioning.models ({', '.join(models)})")
    spec = models[name]
    folders = {key: f"resources/models/{name}/{key}" for key in ("pipeline", "vlm")} if "build" in spec else spec
    return {
        "pipeline": folders["pipeline"],
        "vlm": folders["vlm"],
        "trust_remote_code": spec.get("trust_remote_code", False),
    }


def experiment_model(wildcards):
    where = f"conditioning.experiments.{wildcards.experiment}"
    return conditioning_model(conditioning_experiment(wildcards.experiment)["model"], where)


def analysis_settings(wildcards):
    return conditioning_job_params(conditioning_analysis())


def analysis_threads(wildcards):
    return conditioning_analysis().get("threads", CONDITIONING_DEFAULTS["threads"])


def analysis_model(wildcards):
    return conditioning_model(conditioning_analysis()["model"], "conditioning.analysis")


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


def conditioning_following():
    return conditioning().get("caption_following")


@cache
def following_spec():
    """The caption-following study's settings (built-in < conditioning.defaults < its own) with
    each recipe's full settings (defaults' recipe < the recipe)."""
    own = {"grid_captions": 6, **{k: v for k, v in conditioning_following().items() if k != "recipes"}}
    spec = merged_settings("conditioning", CONDITIONING_DEFAULTS, own, nested=("recipe",))
    spec.pop("prompt", None)  # the captions are the prompts
    recipe = spec.pop("recipe")
    spec["recipes"] = {name: {**recipe, **settings} for name, settings in conditioning_following()["recipes"].items()}
    if "model" not in spec:
        raise ValueError("config: conditioning.caption_following: no model (set it there or in conditioning.defaults)")
    return spec


def following_settings(wildcards):
    return conditioning_job_params(following_spec())


def following_threads(wildcards):
    return following_spec()["threads"]


def following_model(wildcards):
    return conditioning_model(following_spec()["model"], "conditioning.caption_following")


def following_inputs(wildcards):
    spec = following_spec()
    inputs = conditioning_model_inputs(spec["model"], spec["image"], "conditioning.caption_following")
    return {**inputs, "captions": spec["captions"]}


def conditioning_report_inputs(wildcards):
    inputs = {"metadata": [f"results/conditioning/{name}/metadata.json" for name in conditioning_experiments()]}
    if conditioning_analysis():
        inputs["layers"] = "results/conditioning/dimensions/layers.csv"
    if conditioning_following():
        inputs["rates"] = "results/conditioning/caption_following/rates.csv"
    return inputs


def conditioning_outputs():
    """Each experiment's metadata and grid, the dimension analysis, the study's summary rows."""
    names = ("metadata.json", "comparison_grid.png")
    files = [f"results/conditioning/{name}/{file}" for name in conditioning_experiments() for file in names]
    if conditioning_analysis():
        files.append("results/conditioning/dimensions/dimensions.png")
    if conditioning_following():
        files.append("results/conditioning/caption_following/caption_following.png")
    return files + (["results/conditioning/summary.csv"] if files else [])


def conditioning_summary_entries():
    if not (conditioning_experiments() or conditioning_analysis() or conditioning_following()):
        return []
    return [
        {
            "experiment": "conditioning",
            "family": "conditioning",
            "model": None,
            "dataset": None,
            "kind": "table",
            "source": "results/conditioning/summary.csv",
        }
    ]
