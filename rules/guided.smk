# Guided visual-token pruning (seed 000, SGL): a small guide VLM's attention ranks the visual
# tokens and the decode VLM keeps the top ones from layer K on; FastV and random ranking are the
# baselines at equal retention. One job per (experiment, method) answers at every keep ratio; each
# keep ratio (and the guide alone) is evaluated like any VQA run, then tabulated and plotted
# against retention, with the guide's early-exit sweep and attention comparisons.


include: "functions/guided.smk"


rule guided_decode:
    input:
        unpack(guided_run_inputs),
    output:
        rows="results/guided/{experiment}/{method}/rows.jsonl",
        importance="results/guided/{experiment}/{method}/importance.parquet",
    log:
        "logs/guided/{experiment}/{method}.log",
    benchmark:
        "results/benchmarks/guided_decode/{experiment}_{method}.tsv"
    wildcard_constraints:
        experiment=one_of(unsharded_guided_experiments()),
        method="guided",
    conda:
        "../envs/vlmflow.yaml"
    threads: setting(guided_spec, "threads")
    resources:
        **gpu_resources(setting(guided_spec, "gpus")),
    params:
        pruning=pruning_params,
        generation=guided_generation,
        device=setting(guided_spec, "device"),
        placement=placement(guided_spec),
        trust_remote_code=guided_remote_code,
    script:
        "../workflow/scripts/guided/decode.py"


use rule guided_decode as baseline_decode with:
    output:
        rows="results/guided/{experiment}/{method}/rows.jsonl",
    benchmark:
        "results/benchmarks/guided_decode/{experiment}_{method}.tsv"
    wildcard_constraints:
        experiment=one_of(unsharded_guided_experiments()),
        method=one_of(BASELINE_METHODS),


# With `shards`, one decode job per (method, shard), gathered into the files one job writes.
use rule guided_decode as guided_decode_shard with:
    output:
        rows="results/guided/{experiment}/{method}/shards/{shard}.rows.jsonl",
        importance="results/guided/{experiment}/{method}/shards/{shard}.importance.parquet",
    log:
        "logs/guided/{experiment}/{method}-{shard}.log",
    benchmark:
        "results/benchmarks/guided_decode/{experiment}_{method}-{shard}.tsv"
    wildcard_constraints:
        experiment=one_of(sharded_guided_experiments()),
        method="guided",
        shard=r"\d+-of-\d+",


use rule guided_decode as baseline_decode_shard with:
    output:
        rows="results/guided/{experiment}/{method}/shards/{shard}.rows.jsonl",
    log:
        "logs/guided/{experiment}/{method}-{shard}.log",
    benchmark:
        "results/benchmarks/guided_decode/{experiment}_{method}-{shard}.tsv"
    wildcard_constraints:
        experiment=one_of(sharded_guided_experiments()),
        method=one_of(BASELINE_METHODS),
        shard=r"\d+-of-\d+",


rule gather_guided_shards:
    input:
        rows=guided_shard_files("rows", ".jsonl"),
        importance=guided_shard_files("importance", ".parquet"),
        cache=guided_cache,
    output:
        rows="results/guided/{experiment}/{method}/rows.jsonl",
        importance="results/guided/{experiment}/{method}/importance.parquet",
    log:
        "logs/guided/{experiment}/{method}-gather.log",
    wildcard_constraints:
        experiment=one_of(sharded_guided_experiments()),
        method="guided",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/guided/gather.py"


use rule gather_guided_shards as gather_baseline_shards with:
    input:
        rows=guided_shard_files("rows", ".jsonl"),
        cache=guided_cache,
    output:
        rows="results/guided/{experiment}/{method}/rows.jsonl",
    wildcard_constraints:
        experiment=one_of(sharded_guided_experiments()),
        method=one_of(BASELINE_METHODS),


rule evaluate_pruned:
    input:
        rows="results/guided/{experiment}/{method}/rows.jsonl",
        cache=guided_cache,
    output:
        predictions="results/guided/{experiment}/{method}/{answers}/predictions.jsonl",
        metrics="results/guided/{experiment}/{method}/{answers}/metrics.json",
    log:
        "logs/guided/{experiment}/{method}/{answers}/evaluate.log",
    wildcard_constraints:
        experiment=one_of(guided_experiments()),
        answers=r"keep-[0-9.]+|guide",
    conda:
        "../envs/vlmflow.yaml"
    params:
        metric=setting(guided_spec, "metric"),
        dataset_format=guided_dataset_format,
        name=answer_set_name,
    script:
        "../workflow/scripts/guided/evaluate.py"


rule retention_table:
    input:
        metrics=guided_metrics,
        rows=guided_rows,
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
    log:
        "logs/guided/{experiment}/retention.log",
    wildcard_constraints:
        experiment=one_of(guided_experiments()),
    conda:
        "../envs/vlmflow.yaml"
    params:
        answer_sets=answer_sets,
        title=retention_title,
    script:
        "../workflow/scripts/guided/retention_table.py"


rule early_exit:
    input:
        rows="results/guided/{experiment}/guided/rows.jsonl",
        cache=guided_cache,
    output:
        csv="results/guided/{experiment}/early_exit.csv",
        markdown="results/guided/{experiment}/early_exit.md",
        plot=report(
            "results/guided/{experiment}/early_exit.png",
            caption="../workflow/report/early_exit.rst",
            category="Guided token pruning",
            subcategory="{experiment}",
        ),
    log:
        "logs/guided/{experiment}/early_exit.log",
    wildcard_constraints:
        experiment=one_of(guided_experiments()),
    conda:
        "../envs/vlmflow.yaml"
    params:
        metric=setting(guided_spec, "metric"),
        title=early_exit_title,
    script:
        "../workflow/scripts/guided/early_exit.py"


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
    log:
        "logs/guided/compare/{comparison}.log",
    wildcard_constraints:
        comparison=one_of(guided_comparisons()),
    conda:
        "../envs/vlmflow.yaml"
    params:
        spec=comparison_params,
        keep=comparison_keep,
    script:
        "../workflow/scripts/guided/compare_attention.py"
