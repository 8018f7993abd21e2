# Report: every experiment's metrics in one tidy table, results/summary.csv, and each configured
# ablation (experiments that differ in one setting) as a side-by-side table.


rule summary:
    input:
        sources=summary_inputs(),
    output:
        summary=report("results/summary.csv", caption="../workflow/report/summary.rst", category="Summary"),
    params:
        entries=summary_entries(),
    log:
        "logs/summary.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/summary.py"


rule ablation_table:
    input:
        metrics=lambda wildcards: [f"results/vqa/{name}/metrics.json" for name in ablation_experiments(wildcards.ablation)],
    output:
        csv=report(
            "results/ablations/{ablation}.csv",
            caption="../workflow/report/ablation.rst",
            category="Answer modes and decoding",
        ),
        markdown="results/ablations/{ablation}.md",
    params:
        experiments=lambda wildcards: ablation_experiments(wildcards.ablation),
        settings=lambda wildcards: {name: vqa_experiment(name) for name in ablation_experiments(wildcards.ablation)},
        title=lambda wildcards: config["ablations"][wildcards.ablation].get("title", wildcards.ablation),
    wildcard_constraints:
        ablation=one_of(config.get("ablations", {})),
    log:
        "logs/ablations/{ablation}.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/ablation_table.py"
