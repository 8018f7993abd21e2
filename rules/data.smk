# Caching: one rule per upstream format writes results/cache/<dataset>.jsonl, the unified record
# every later stage reads. Formats with embedded images also extract them next to the cache.


rule cache_vqav2:
    input:
        unpack(dataset_inputs),
    output:
        cache="results/cache/{dataset}.jsonl",
    params:
        selection=selection_params,
    wildcard_constraints:
        dataset=one_of(datasets_of_format("vqav2")),
    log:
        "logs/cache/{dataset}.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/cache_dataset.py"


rule cache_textvqa:
    input:
        unpack(dataset_inputs),
    output:
        cache="results/cache/{dataset}.jsonl",
    params:
        selection=selection_params,
    wildcard_constraints:
        dataset=one_of(datasets_of_format("textvqa")),
    log:
        "logs/cache/{dataset}.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/cache_dataset.py"


rule cache_kvasir:
    input:
        unpack(dataset_inputs),
    output:
        cache="results/cache/{dataset}.jsonl",
        images=directory("results/cache/{dataset}/images"),
    params:
        selection=selection_params,
    wildcard_constraints:
        dataset=one_of(datasets_of_format("kvasir")),
    log:
        "logs/cache/{dataset}.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/cache_dataset.py"


rule cache_swap_pairs:
    input:
        unpack(dataset_inputs),
    output:
        cache="results/cache/{dataset}.jsonl",
        images=directory("results/cache/{dataset}/images"),
    params:
        selection=selection_params,
    wildcard_constraints:
        dataset=one_of(datasets_of_format("swap_pairs")),
    log:
        "logs/cache/{dataset}.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/cache_dataset.py"
