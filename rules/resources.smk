# Inputs that are made, not downloaded: synthetic raw data in the upstream formats, the tiny model
# zoo, hybrid checkpoints and InternVL2 chat checkpoints converted to the native format. Real data
# and checkpoints replace them by pointing config.yaml at local paths.


include: "functions/resources.smk"


rule synth_vqav2:
    output:
        questions="resources/raw/vqav2/v2_OpenEnded_mscoco_{split}2014_questions.json",
        annotations="resources/raw/vqav2/v2_mscoco_{split}2014_annotations.json",
        images=directory("resources/raw/vqav2/{split}2014"),
    log:
        "logs/synth/vqav2_{split}.log",
    wildcard_constraints:
        split=synthetic_splits("vqav2"),
    priority: PRIORITY_PREPARE
    conda:
        "../envs/vlmflow.yaml"
    params:
        format="vqav2",
        n=synth_size("vqav2"),
        seed=synthetic().get("seed", 0),
        image_size=synthetic().get("image_size", 224),
    script:
        "../workflow/scripts/resources/synth.py"


use rule synth_vqav2 as synth_vqav2_several with:
    output:
        questions="resources/raw/vqav2_several/v2_OpenEnded_mscoco_{split}2014_questions.json",
        annotations="resources/raw/vqav2_several/v2_mscoco_{split}2014_annotations.json",
        images=directory("resources/raw/vqav2_several/{split}2014"),
    log:
        "logs/synth/vqav2_several_{split}.log",
    wildcard_constraints:
        split=synthetic_splits("vqav2_several"),
    params:
        format="vqav2_several",
        n=synth_size("vqav2_several"),
        seed=synthetic().get("seed", 0),
        image_size=synthetic().get("image_size", 224),


use rule synth_vqav2 as synth_textvqa with:
    output:
        json="resources/raw/textvqa/{split}/TextVQA_0.5.1_{split}.json",
        images=directory("resources/raw/textvqa/{split}/train_images"),
    log:
        "logs/synth/textvqa_{split}.log",
    wildcard_constraints:
        split=synthetic_splits("textvqa"),
    params:
        format="textvqa",
        n=synth_size("textvqa"),
        seed=synthetic().get("seed", 0),
        image_size=synthetic().get("image_size", 224),


use rule synth_vqav2 as synth_kvasir with:
    output:
        parquet="resources/raw/kvasir-vqa/{split}.parquet",
    log:
        "logs/synth/kvasir_{split}.log",
    wildcard_constraints:
        split=synthetic_splits("kvasir"),
    params:
        format="kvasir",
        n=synth_size("kvasir"),
        seed=synthetic().get("seed", 0),
        image_size=synthetic().get("image_size", 224),


use rule synth_vqav2 as synth_swap_pairs with:
    output:
        tsv="resources/raw/swap_pairs/swap_pairs_{split}.tsv",
        boxes="resources/raw/swap_pairs/swap_pairs_{split}_boxes.json",
    log:
        "logs/synth/swap_pairs_{split}.log",
    wildcard_constraints:
        split=synthetic_splits("swap_pairs"),
    params:
        format="swap_pairs",
        n=synth_size("swap_pairs"),
        seed=synthetic().get("seed", 0),
        image_size=synthetic().get("image_size", 224),


rule synth_shape_videos:
    output:
        jsonl="resources/raw/shapes/{split}.jsonl",
        frames=directory("resources/raw/shapes/{split}"),
    log:
        "logs/synth/shapes_{split}.log",
    wildcard_constraints:
        split=synthetic_splits("shapes"),
    priority: PRIORITY_PREPARE
    conda:
        "../envs/vlmflow.yaml"
    params:
        n=synth_size("shapes"),
        seed=synthetic().get("seed", 0),
        image_size=synthetic().get("video_image_size", 112),
        frames=synthetic().get("video_frames", 4),
    script:
        "../workflow/scripts/resources/synth_videos.py"


rule synth_captioned_scenes:
    output:
        scenes=directory("resources/raw/scenes/{split}"),
    log:
        "logs/synth/scenes_{split}.log",
    wildcard_constraints:
        split=synthetic_splits("scenes"),
    priority: PRIORITY_PREPARE
    conda:
        "../envs/vlmflow.yaml"
    params:
        n=synth_size("scenes"),
        seed=synthetic().get("seed", 0),
        image_size=synthetic().get("scene_image_size", 64),
    script:
        "../workflow/scripts/resources/synth_scenes.py"


rule synth_corpus:
    output:
        corpus="resources/corpus.txt",
    log:
        "logs/synth/corpus.log",
    priority: PRIORITY_PREPARE
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/resources/synth_corpus.py"


rule synth_conditioning_image:
    output:
        image="resources/raw/conditioning/house.png",
    log:
        "logs/synth/conditioning_image.log",
    priority: PRIORITY_PREPARE
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/resources/synth_conditioning_image.py"


rule build_model:
    input:
        corpus="resources/corpus.txt",
    output:
        checkpoint=directory("resources/models/{model}"),
    log:
        "logs/build_model/{model}.log",
    benchmark:
        "results/benchmarks/build_model/{model}.tsv"
    wildcard_constraints:
        model=one_of(built_models()),
    priority: PRIORITY_PREPARE
    conda:
        "../envs/vlmflow.yaml"
    params:
        spec=model_build_spec,
    script:
        "../workflow/scripts/resources/build_model.py"


rule hybrid_checkpoint:
    input:
        unpack(hybrid_inputs),
    output:
        checkpoint=directory("resources/models/{model}"),
    log:
        "logs/hybrid_checkpoint/{model}.log",
    wildcard_constraints:
        model=one_of(hybrid_models()),
    priority: PRIORITY_PREPARE
    conda:
        "../envs/vlmflow.yaml"
    params:
        projector=hybrid_projector,
    script:
        "../workflow/scripts/resources/hybrid_checkpoint.py"


rule convert_internvl_chat:
    input:
        source=internvl_chat_source,
    output:
        checkpoint=directory("resources/models/{model}"),
    log:
        "logs/convert_internvl_chat/{model}.log",
    wildcard_constraints:
        model=one_of(converted_models()),
    priority: PRIORITY_PREPARE
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/resources/convert_internvl_chat.py"
