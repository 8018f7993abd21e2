# Inputs that are made, not downloaded: synthetic raw data in the upstream formats and the tiny
# model zoo. Real data and checkpoints replace them by pointing config.yaml at local paths.


rule synth_vqav2:
    output:
        questions="resources/raw/vqav2/v2_OpenEnded_mscoco_{split}2014_questions.json",
        annotations="resources/raw/vqav2/v2_mscoco_{split}2014_annotations.json",
        images=directory("resources/raw/vqav2/{split}2014"),
    params:
        synth_params("vqav2"),
    wildcard_constraints:
        split="train|val",
    log:
        "logs/synth/vqav2_{split}.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/synth.py"


rule synth_textvqa:
    output:
        json="resources/raw/textvqa/{split}/TextVQA_0.5.1_{split}.json",
        images=directory("resources/raw/textvqa/{split}/train_images"),
    params:
        synth_params("textvqa"),
    wildcard_constraints:
        split="train|val",
    log:
        "logs/synth/textvqa_{split}.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/synth.py"


rule synth_kvasir:
    output:
        parquet="resources/raw/kvasir-vqa/{split}.parquet",
    params:
        synth_params("kvasir"),
    wildcard_constraints:
        split="train|val",
    log:
        "logs/synth/kvasir_{split}.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/synth.py"


rule synth_swap_pairs:
    output:
        tsv="resources/raw/swap_pairs/swap_pairs_{split}.tsv",
        boxes="resources/raw/swap_pairs/swap_pairs_{split}_boxes.json",
    params:
        synth_params("swap_pairs"),
    wildcard_constraints:
        split="train|val",
    log:
        "logs/synth/swap_pairs_{split}.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/synth.py"


rule synth_corpus:
    output:
        corpus="resources/corpus.txt",
    log:
        "logs/synth/corpus.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/synth_corpus.py"


rule build_model:
    input:
        corpus="resources/corpus.txt",
    output:
        checkpoint=directory("resources/models/{model}"),
    params:
        spec=lambda wildcards: config["models"][wildcards.model]["build"],
    wildcard_constraints:
        model=one_of(built_models()),
    log:
        "logs/build_model/{model}.log",
    benchmark:
        "results/benchmarks/build_model/{model}.tsv"
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/build_model.py"


rule hybrid_checkpoint:
    input:
        unpack(hybrid_inputs),
    output:
        checkpoint=directory("resources/models/{model}"),
    params:
        projector=lambda wildcards: config["models"][wildcards.model]["hybrid"].get("projector", False),
    wildcard_constraints:
        model=one_of(hybrid_models()),
    priority: 10  # a training job usually waits for it
    log:
        "logs/hybrid_checkpoint/{model}.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/hybrid_checkpoint.py"


rule synth_shape_videos:
    output:
        jsonl="resources/raw/shapes/{split}.jsonl",
        frames=directory("resources/raw/shapes/{split}"),
    params:
        n=lambda wildcards: config["synthetic"]["sizes"]["shapes"][wildcards.split],
        seed=config.get("synthetic", {}).get("seed", 0),
        image_size=config.get("synthetic", {}).get("video_image_size", 112),
        frames=config.get("synthetic", {}).get("video_frames", 4),
    wildcard_constraints:
        split="train|val",
    log:
        "logs/synth/shapes_{split}.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/synth_videos.py"


rule build_foveated_model:
    output:
        parts=directory("resources/models/{model}"),
    params:
        spec=lambda wildcards: foveated()["models"][wildcards.model]["build"],
    wildcard_constraints:
        model=one_of(foveated_built_models()),
    log:
        "logs/build_model/{model}.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/build_foveated_model.py"


rule build_conditioning_model:
    input:
        corpus="resources/corpus.txt",
    output:
        parts=directory("resources/models/{model}"),
    params:
        spec=lambda wildcards: conditioning()["models"][wildcards.model]["build"],
    wildcard_constraints:
        model=one_of(conditioning_built_models()),
    log:
        "logs/build_model/{model}.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/build_conditioning_model.py"


rule synth_conditioning_image:
    output:
        image="resources/raw/conditioning/house.png",
    log:
        "logs/synth/conditioning_image.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/synth_conditioning_image.py"
