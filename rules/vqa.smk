# VQA evaluation (seeds 000 and 002): batched greedy generation of one model on one cached
# dataset, resumable (a job killed mid-way continues after its last complete chunk); then the
# official VQA accuracy (or exact match for single-answer datasets), overall, per answer type and
# per question type, plus the per-inferred-type table (numeric tolerance, set match, micro / macro).


include: "functions/vqa.smk"


rule infer_vqa:
    input:
        unpack(infer_inputs),
    output:
        predictions="results/vqa/{experiment}/predictions.jsonl",
    log:
        "logs/vqa/{experiment}/infer.log",
    benchmark:
        "results/benchmarks/infer_vqa/{experiment}.tsv"
    wildcard_constraints:
        experiment=unsharded_vqa_experiment(),
    conda:
        "../envs/vlmflow.yaml"
    threads: setting(vqa_experiment, "threads")
    resources:
        **gpu_resources(setting(vqa_experiment, "gpus")),
    params:
        generation=generation_params,
        device=setting(vqa_experiment, "device"),
        placement=placement(vqa_experiment),
        trust_remote_code=vqa_remote_code,
    script:
        "../workflow/scripts/vqa/infer.py"


# With `shards`, one inference job per shard, gathered into the predictions one job writes.
use rule infer_vqa as infer_vqa_shard with:
    output:
        predictions="results/vqa/{experiment}/shards/{shard}.jsonl",
    log:
        "logs/vqa/{experiment}/infer-{shard}.log",
    benchmark:
        "results/benchmarks/infer_vqa/{experiment}-{shard}.tsv"
    wildcard_constraints:
        experiment=one_of(sharded_vqa_experiments()),
        shard=r"\d+-of-\d+",


rule gather_vqa_shards:
    input:
        shards=vqa_shard_files,
        cache=vqa_cache,
    output:
        predictions="results/vqa/{experiment}/predictions.jsonl",
    log:
        "logs/vqa/{experiment}/gather.log",
    wildcard_constraints:
        experiment=one_of(sharded_vqa_experiments()),
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/vqa/gather.py"


rule evaluate_vqa:
    input:
        predictions="results/vqa/{experiment}/predictions.jsonl",
        cache=vqa_cache,
    output:
        metrics="results/vqa/{experiment}/metrics.json",
        per_type_csv=report(
            "results/vqa/{experiment}/per_type.csv",
            caption="../workflow/report/per_type.rst",
            category="VQA evaluation",
            subcategory="{experiment}",
        ),
        per_type_md="results/vqa/{experiment}/per_type.md",
    log:
        "logs/vqa/{experiment}/evaluate.log",
    wildcard_constraints:
        experiment=VQA_EXPERIMENT,
    conda:
        "../envs/vlmflow.yaml"
    params:
        metric=setting(vqa_experiment, "metric"),
        variant=setting(vqa_experiment, "variant"),
        tolerance=setting(vqa_experiment, "tolerance"),
        dataset_format=vqa_dataset_format,
        experiment=experiment_name,
    script:
        "../workflow/scripts/vqa/evaluate.py"
