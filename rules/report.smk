# Report: every experiment's metrics in one tidy table, results/summary.csv, and each configured
# ablation (VQA experiments that differ in one setting) as a side-by-side table.


include: "functions/report.smk"


rule summary:
    input:
        sources=summary_inputs(),
        declared=declared_outputs(),
    output:
        summary=report("results/summary.csv", caption="../workflow/report/summary.rst", category="Summary"),
    log:
        "logs/summary.log",
    conda:
        "../envs/vlmflow.yaml"
    params:
        entries=summary_entries(),
    script:
        "../workflow/scripts/report/summary.py"


rule ablation_table:
    input:
        metrics=ablation_metrics,
    output:
        csv=report(
            "results/ablations/{ablation}.csv",
            caption="../workflow/report/ablation.rst",
            category="Answer modes and decoding",
        ),
        markdown="results/ablations/{ablation}.md",
    log:
        "logs/ablations/{ablation}.log",
    wildcard_constraints:
        ablation=one_of(ablations()),
    conda:
        "../envs/vlmflow.yaml"
    params:
        experiments=ablation_experiments,
        settings=ablation_settings,
        title=ablation_title,
    script:
        "../workflow/scripts/report/ablation_table.py"
