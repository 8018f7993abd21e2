# Evaluation: the official VQA accuracy (or exact match for single-answer datasets), overall, per
# answer type and per question type, plus the per-inferred-type table (numeric tolerance, set match,
# micro / macro) as CSV and markdown.


rule evaluate_vqa:
    input:
        predictions="results/vqa/{experiment}/predictions.jsonl",
        cache=lambda wildcards: f"results/cache/{vqa_experiment(wildcards.experiment)['dataset']}.jsonl",
    output:
        metrics="results/vqa/{experiment}/metrics.json",
        per_type_csv=report(
            "results/vqa/{experiment}/per_type.csv",
            caption="../workflow/report/per_type.rst",
            category="VQA evaluation",
            subcategory="{experiment}",
        ),
        per_type_md="results/vqa/{experiment}/per_type.md",
    params:
        metric=lambda wildcards: vqa_experiment(wildcards.experiment)["metric"],
        variant=lambda wildcards: vqa_experiment(wildcards.experiment)["variant"],
        tolerance=lambda wildcards: vqa_experiment(wildcards.experiment)["tolerance"],
        experiment=lambda wildcards: wildcards.experiment,
    wildcard_constraints:
        experiment=VQA_EXPERIMENT,
    log:
        "logs/vqa/{experiment}/evaluate.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/evaluate_vqa.py"
