# Guided visual-token pruning (SGL): a small guide VLM's attention ranks the visual tokens and the
# decode VLM keeps the top ones from layer K on; FastV and random ranking are the baselines at equal
# retention. One job per (experiment, method) answers at every keep ratio; each keep ratio (and
# the guide alone) is evaluated like any VQA run, then tabulated and plotted against retention.


rule guided_decode:
    input:
        unpack(guided_run_inputs),
    output:
        rows="results/guided/{experiment}/{method}/rows.jsonl",
        importance="results/guided/{experiment}/{method}/importance.parquet",
    params:
        pruning=pruning_params,
        generation=guided_generation,
        device=lambda wildcards: guided_spec(wildcards.experiment)["device"],
        trust_remote_code=lambda wildcards: [trusts_remote_code(guided_spec(wildcards.experiment)[role]) for role in ("decode", "guide")],
    wildcard_constraints:
        experiment=one_of(guided_experiments()),
        method="guided",
    threads: lambda wildcards: guided_spec(wildcards.experiment)["threads"]
    retries: GPU_RETRIES
    resources:
        gpu=1,
        batch_divisor=oom_batch_divisor,
        mem_mb=16000,
        runtime=240,
    log:
        "logs/guided/{experiment}/{method}.log",
    benchmark:
        "results/benchmarks/guided_decode/{experiment}_{method}.tsv"
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/pruned_decode.py"


use rule guided_decode as baseline_decode with:
    output:
        rows="results/guided/{experiment}/{method}/rows.jsonl",
    wildcard_constraints:
        experiment=one_of(guided_experiments()),
        method=one_of(BASELINE_METHODS),
    benchmark:
        "results/benchmarks/guided_decode/{experiment}_{method}.tsv"


rule evaluate_pruned:
    input:
        rows="results/guided/{experiment}/{method}/rows.jsonl",
        cache=lambda wildcards: f"results/cache/{guided_spec(wildcards.experiment)['dataset']}.jsonl",
    output:
        predictions="results/guided/{experiment}/{method}/{answers}/predictions.jsonl",
        metrics="results/guided/{experiment}/{method}/{answers}/metrics.json",
    params:
        metric=lambda wildcards: guided_spec(wildcards.experiment)["metric"],
        name=lambda wildcards: f"{wildcards.experiment}.{wildcards.method}.{wildcards.answers}",
    wildcard_constraints:
        experiment=one_of(guided_experiments()),
        answers=r"keep-[0-9.]+|guide",
    log:
        "logs/guided/{experiment}/{method}/{answers}/evaluate.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/evaluate_pruned.py"


rule retention_table:
    input:
        metrics=lambda wildcards: guided_metrics(wildcards.experiment),
        rows=lambda wildcards: expand(
            "results/guided/{experiment}/{method}/rows.jsonl", experiment=wildcards.experiment, method=guided_spec(wildcards.experiment)["methods"]
        ),
    output:
        csv=report(
            "results/guided/{experiment}/retention.csv",
            caption="../workflow/report/retention.rst",
            category="Guided token pruning",
            subcategory="{experiment}",
        ),
        markdown="results/guided/{experiment}/retention.md",
        plot=report(
            "results/guided/{experiment}/accuracy_vs_retention.png",
            caption="../workflow/report/retention.rst",
            category="Guided token pruning",
            subcategory="{experiment}",
        ),
    params:
        answer_sets=lambda wildcards: guided_answer_sets(wildcards.experiment),
        title=lambda wildcards: f"{wildcards.experiment}: accuracy against visual tokens kept",
    wildcard_constraints:
        experiment=one_of(guided_experiments()),
    log:
        "logs/guided/{experiment}/retention.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/retention_table.py"


rule early_exit:
    input:
        rows="results/guided/{experiment}/guided/rows.jsonl",
        cache=lambda wildcards: f"results/cache/{guided_spec(wildcards.experiment)['dataset']}.jsonl",
    output:
        csv="results/guided/{experiment}/early_exit.csv",
        markdown="results/guided/{experiment}/early_exit.md",
        plot=report(
            "results/guided/{experiment}/early_exit.png",
            caption="../workflow/report/early_exit.rst",
            category="Guided token pruning",
            subcategory="{experiment}",
        ),
    params:
        metric=lambda wildcards: guided_spec(wildcards.experiment)["metric"],
        title=lambda wildcards: f"{wildcards.experiment}: early exit on the guide's confidence and consistency",
    wildcard_constraints:
        experiment=one_of(guided_experiments()),
    log:
        "logs/guided/{experiment}/early_exit.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/early_exit.py"


rule compare_attention:
    input:
        unpack(comparison_inputs),
    output:
        stats="results/guided/compare/{comparison}.json",
        markdown=report(
            "results/guided/compare/{comparison}.md",
            caption="../workflow/report/compare_attention.rst",
            category="Guided token pruning",
        ),
    params:
        spec=lambda wildcards: comparison_spec(wildcards.comparison),
        keep=lambda wildcards: keep_label(comparison_spec(wildcards.comparison)["keep_ratio"]),
    wildcard_constraints:
        comparison=one_of(config.get("guided", {}).get("comparisons", {})),
    log:
        "logs/guided/compare/{comparison}.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/compare_attention.py"
