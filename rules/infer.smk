# Inference: batched greedy generation of one model on one cached dataset. Resumable: a job
# killed mid-way and started again continues after its last complete chunk.


rule infer_vqa:
    input:
        unpack(infer_inputs),
    output:
        predictions="results/vqa/{experiment}/predictions.jsonl",
    params:
        generation=generation_params,
        device=lambda wildcards: vqa_experiment(wildcards.experiment)["device"],
        trust_remote_code=lambda wildcards: trusts_remote_code(vqa_experiment(wildcards.experiment)["model"]),
    wildcard_constraints:
        experiment=VQA_EXPERIMENT,
    threads: lambda wildcards: vqa_experiment(wildcards.experiment)["threads"]
    retries: GPU_RETRIES
    resources:
        gpu=1,
        batch_divisor=oom_batch_divisor,
        mem_mb=8000,
        runtime=120,
    log:
        "logs/vqa/{experiment}/infer.log",
    benchmark:
        "results/benchmarks/infer_vqa/{experiment}.tsv"
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/infer_vqa.py"
