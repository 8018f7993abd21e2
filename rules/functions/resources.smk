# Settings and input functions of the resources rules (synthetic data, tiny zoo, hybrids, conversions).


def synthetic():
    return config.get("synthetic", {})


def synthetic_splits(fmt):
    """A wildcard regex of the splits of `fmt` the `synthetic` section makes: none without it, so
    a real dataset's missing file is reported missing instead of being synthesised."""
    return one_of(synthetic().get("sizes", {}).get(fmt, {}))


def synth_size(fmt):
    """A params function: the number of items of one split of a synthetic dataset."""

    def split_size(wildcards):
        return synthetic()["sizes"][fmt][wildcards.split]

    split_size.__name__ = f"{fmt}_split_size"
    return split_size


def built_models():
    return [name for name, spec in config["models"].items() if "build" in spec]


def hybrid_models():
    return [name for name, spec in config["models"].items() if "hybrid" in spec]


def converted_models():
    """Remote-code InternVL2 chat checkpoints, converted to the native format."""
    return [name for name, spec in config["models"].items() if "internvl_chat" in spec]


def model_build_spec(wildcards):
    return config["models"][wildcards.model]["build"]


def hybrid_inputs(wildcards):
    spec = config["models"][wildcards.model]["hybrid"]
    return {"vision": model_path(spec["vision"]), "language": model_path(spec["language"])}


def internvl_chat_source(wildcards):
    return config["models"][wildcards.model]["internvl_chat"]


def hybrid_projector(wildcards):
    return config["models"][wildcards.model]["hybrid"].get("projector", False)


def check_models():
    for name, spec in config["models"].items():
        for role in ("vision", "language"):
            if "hybrid" in spec:
                check_reference(f"models.{name}.hybrid.{role}", "model", spec["hybrid"][role])


check_models()
