# Input functions of the report rules (rules/report.smk).


@cache
def summary_entries():
    """One entry per metrics source that goes into results/summary.csv, family by family."""
    return [
        *vqa_summary_entries(),
        *finetune_summary_entries(),
        *guided_summary_entries(),
        *probing_summary_entries(),
        *foveated_summary_entries(),
        *conditioning_summary_entries(),
    ]


def declared_outputs():
    """Every other table and figure the config declares: the summary waits for them too, so
    `snakemake results/summary.csv` and the default target make the same outputs, and
    `snakemake --report` finds each file it shows after either."""
    return [
        *ablation_tables(),
        *finetune_outputs(),
        *zoo_figures(),
        *guided_outputs(),
        *probing_outputs(),
        *foveated_outputs(),
        *conditioning_outputs(),
    ]


def summary_inputs():
    """What the summary waits for: each metrics file, and each fine-tuning experiment's final stage
    (its log lives inside that directory output)."""
    return [entry.get("requires", entry["source"]) for entry in summary_entries()]


def ablations():
    return config.get("ablations", {})


def ablation_experiments(wildcards):
    return ablations()[wildcards.ablation]["experiments"]


def ablation_metrics(wildcards):
    return [f"results/vqa/{name}/metrics.json" for name in ablation_experiments(wildcards)]


def ablation_settings(wildcards):
    return {name: vqa_experiment(name) for name in ablation_experiments(wildcards)}


def ablation_title(wildcards):
    return ablations()[wildcards.ablation].get("title", wildcards.ablation)


def ablation_tables():
    return [f"results/ablations/{name}.md" for name in ablations()]


def check_ablations():
    for name, spec in ablations().items():
        for experiment in spec["experiments"]:
            if experiment not in vqa_experiments():
                raise ValueError(f"config: ablations.{name}: unknown VQA experiment '{experiment}'")


check_ablations()
