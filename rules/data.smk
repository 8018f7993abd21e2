# Caching: one rule per upstream format writes results/cache/<dataset>.jsonl, the unified record
# every later stage reads. Formats with embedded images also extract them next to the cache.


include: "functions/data.smk"


rule cache_vqav2:
    input:
        unpack(dataset_inputs),
    output:
        cache="results/cache/{dataset}.jsonl",
    log:
        "logs/cache/{dataset}.log",
    wildcard_constraints:
        dataset=one_of(datasets_of_format("vqav2")),
    priority: PRIORITY_PREPARE
    conda:
        "../envs/vlmflow.yaml"
    params:
        selection=selection_params,
    script:
        "../workflow/scripts/data/cache.py"


use rule cache_vqav2 as cache_textvqa with:
    wildcard_constraints:
        dataset=one_of(datasets_of_format("textvqa")),


use rule cache_vqav2 as cache_kvasir with:
    output:
        cache="results/cache/{dataset}.jsonl",
        images=directory("results/cache/{dataset}/images"),
    wildcard_constraints:
        dataset=one_of(datasets_of_format("kvasir")),


use rule cache_kvasir as cache_swap_pairs with:
    wildcard_constraints:
        dataset=one_of(datasets_of_format("swap_pairs")),


# The generic formats (docs/data.md): JSONL and CSV rows name image files, read in place; parquet
# and save_to_disk tables embed them, extracted like Kvasir-VQA's.
use rule cache_vqav2 as cache_jsonl with:
    wildcard_constraints:
        dataset=one_of(datasets_of_format("jsonl")),


use rule cache_vqav2 as cache_csv with:
    wildcard_constraints:
        dataset=one_of(datasets_of_format("csv")),


use rule cache_kvasir as cache_parquet with:
    wildcard_constraints:
        dataset=one_of(datasets_of_format("parquet")),


use rule cache_kvasir as cache_hf_datasets with:
    wildcard_constraints:
        dataset=one_of(datasets_of_format("hf_datasets")),


# The number of records of a cached dataset, which experiments with `shard_size` split into shards:
# a checkpoint, so their shard jobs are planned once the cache exists.
checkpoint count_records:
    input:
        cache="results/cache/{dataset}.jsonl",
    output:
        counted="results/cache/{dataset}.count.json",
    log:
        "logs/cache/{dataset}.count.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/data/count.py"


# A control copy of a cached dataset (vlmflow.data.controls): every image blanked, for the VQA
# experiments that list it in `controls`.
rule blank_image_control:
    input:
        cache="results/cache/{dataset}.jsonl",
    output:
        cache="results/cache/{dataset}.blank_image.jsonl",
        images=directory("results/cache/{dataset}.blank_image/images"),
    log:
        "logs/cache/{dataset}.blank_image.log",
    wildcard_constraints:
        dataset=one_of(config["datasets"]),
    priority: PRIORITY_PREPARE
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/data/control.py"
