# Pretraining the tiny zoo (`snakemake pretrain`): a larger synthetic corpus -> each model built
# with random weights (with `vision_from`: on another model's pretrained tower; with `init_from`:
# another model's pretrained weights, continued in a later stage) -> trained to each
# scale (a sample count; each stage continues the previous one, resumably) -> the scale's weights
# exported in fp16 -> evaluated on the `eval` sets -> packaged with its provenance in
# results/pretrain/zoo/, which `make pretrain` publishes as resources/zoo/. The default workflow
# starts from resources/zoo/ and plots the pretraining from its provenance.


include: "functions/pretrain.smk"


use rule synth_vqav2 as synth_pretrain_vqav2 with:
    output:
        questions="resources/raw/pretrain/vqav2/v2_OpenEnded_mscoco_{split}2014_questions.json",
        annotations="resources/raw/pretrain/vqav2/v2_mscoco_{split}2014_annotations.json",
        images=directory("resources/raw/pretrain/vqav2/{split}2014"),
    log:
        "logs/synth/pretrain_vqav2_{split}.log",
    wildcard_constraints:
        split="train",
    params:
        format="vqav2",
        n=pretrain_synth_size("vqav2"),
        seed=pretrain_synth_seed(),
        image_size=synthetic().get("image_size", 224),


use rule synth_vqav2 as synth_pretrain_vqav2_several with:
    output:
        questions="resources/raw/pretrain/vqav2_several/v2_OpenEnded_mscoco_{split}2014_questions.json",
        annotations="resources/raw/pretrain/vqav2_several/v2_mscoco_{split}2014_annotations.json",
        images=directory("resources/raw/pretrain/vqav2_several/{split}2014"),
    log:
        "logs/synth/pretrain_vqav2_several_{split}.log",
    wildcard_constraints:
        split="train",
    params:
        format="vqav2_several",
        n=pretrain_synth_size("vqav2_several"),
        seed=pretrain_synth_seed(),
        image_size=synthetic().get("image_size", 224),


use rule synth_vqav2 as synth_pretrain_textvqa with:
    output:
        json="resources/raw/pretrain/textvqa/{split}/TextVQA_0.5.1_{split}.json",
        images=directory("resources/raw/pretrain/textvqa/{split}/train_images"),
    log:
        "logs/synth/pretrain_textvqa_{split}.log",
    wildcard_constraints:
        split="train",
    params:
        format="textvqa",
        n=pretrain_synth_size("textvqa"),
        seed=pretrain_synth_seed(),
        image_size=synthetic().get("image_size", 224),


use rule synth_vqav2 as synth_pretrain_swap_pairs with:
    output:
        tsv="resources/raw/pretrain/swap_pairs/swap_pairs_{split}.tsv",
        boxes="resources/raw/pretrain/swap_pairs/swap_pairs_{split}_boxes.json",
    log:
        "logs/synth/pretrain_swap_pairs_{split}.log",
    wildcard_constraints:
        split="train",
    params:
        format="swap_pairs",
        n=pretrain_synth_size("swap_pairs"),
        seed=pretrain_synth_seed(),
        image_size=synthetic().get("image_size", 224),


use rule synth_shape_videos as synth_pretrain_shapes with:
    output:
        jsonl="resources/raw/pretrain/shapes/{split}.jsonl",
        frames=directory("resources/raw/pretrain/shapes/{split}"),
    log:
        "logs/synth/pretrain_shapes_{split}.log",
    wildcard_constraints:
        split="train",
    params:
        n=pretrain_synth_size("shapes"),
        seed=pretrain_synth_seed(),
        image_size=synthetic().get("video_image_size", 112),
        frames=synthetic().get("video_frames", 4),


use rule build_model as build_pretrain_model with:
    output:
        checkpoint=directory("results/pretrain/{model}/step-0"),
    log:
        "logs/pretrain/{model}/build.log",
    benchmark:
        "results/benchmarks/build_pretrain_model/{model}.tsv"
    wildcard_constraints:
        model=one_of(pretrain_models(start="build")),
    params:
        spec=pretrain_build_spec,


use rule build_model as build_pretrain_language with:
    output:
        checkpoint=directory("results/pretrain/{model}/random"),
    log:
        "logs/pretrain/{model}/build.log",
    benchmark:
        "results/benchmarks/build_pretrain_model/{model}.tsv"
    wildcard_constraints:
        model=one_of(pretrain_models(start="graft")),
    params:
        spec=pretrain_build_spec,


# A model with `vision_from` starts from that model's pretrained vision tower (its last scale, as
# shipped) under its own random language model and projector: step 0 is the graft.
use rule hybrid_checkpoint as graft_pretrain_vision with:
    input:
        vision=pretrain_vision_source,
        language="results/pretrain/{model}/random",
    output:
        checkpoint=directory("results/pretrain/{model}/step-0"),
    log:
        "logs/pretrain/{model}/graft.log",
    wildcard_constraints:
        model=one_of(pretrain_models(start="graft")),
    params:
        projector=False,


# A model with `init_from` continues another's pretraining with its own data and schedule (a later
# stage, as VLMs are pretrained in stages): step 0 is that model's last scale as shipped, or a folder.
rule init_pretrain_model:
    input:
        source=pretrain_init_source,
    output:
        checkpoint=directory("results/pretrain/{model}/step-0"),
    log:
        "logs/pretrain/{model}/init.log",
    wildcard_constraints:
        model=one_of(pretrain_models(start="init")),
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/pretrain/init.py"


use rule train_model as pretrain_model with:
    input:
        unpack(pretrain_stage_inputs),
    output:
        checkpoint=directory("results/pretrain/{experiment}/step-{step}"),
    log:
        "logs/pretrain/{experiment}/step-{step}.log",
    benchmark:
        "results/benchmarks/pretrain_model/{experiment}_step-{step}.tsv"
    wildcard_constraints:
        experiment=one_of(pretrain_models()),
        step=r"[1-9]\d*",
    threads: pretrain_threads
    resources:
        **gpu_resources(pretrain_gpus),
    params:
        settings=pretrain_settings,
        generation=pretrain_generation,
        device=setting(pretrain_spec, "device"),
        run_dir=pretrain_run_dir,
        wandb=setting(pretrain_spec, "wandb"),
        gpus=pretrain_gpus,
        loader_workers=setting(pretrain_spec, "loader_workers"),


# The weights after the first steps of the configured run, from the same build and corpus: what a
# rebuild must reproduce (tests/test_pretrain.py), recorded in every scale's provenance.
rule pretrain_first_steps:
    input:
        unpack(pretrain_first_steps_inputs),
    output:
        digests="results/pretrain/{experiment}/first_steps.json",
    log:
        "logs/pretrain/{experiment}/first_steps.log",
    wildcard_constraints:
        experiment=one_of(pretrain_models()),
    conda:
        "../envs/vlmflow.yaml"
    params:
        settings=pretrain_settings,
        generation=pretrain_generation,
        steps=2,
    script:
        "../workflow/scripts/pretrain/first_steps.py"


rule export_zoo_weights:
    input:
        checkpoint=scale_checkpoint,
    output:
        weights=directory("results/pretrain/weights/{model}/samples-{samples}"),
    log:
        "logs/pretrain/{model}/export-{samples}.log",
    wildcard_constraints:
        model=one_of(pretrain_models()),
        samples=r"\d+",
    conda:
        "../envs/vlmflow.yaml"
    params:
        dtype=ZOO_DTYPE,
    script:
        "../workflow/scripts/pretrain/export.py"


rule package_zoo_scale:
    input:
        unpack(zoo_package_inputs),
    output:
        scale=directory("results/pretrain/zoo/{model}/samples-{samples}"),
    log:
        "logs/pretrain/{model}/package-{samples}.log",
    wildcard_constraints:
        model=one_of(pretrain_models()),
        samples=r"\d+",
    conda:
        "../envs/vlmflow.yaml"
    params:
        config=pretrain_provenance_config,
        init_origin=pretrain_init_origin,
    script:
        "../workflow/scripts/pretrain/package.py"


# The foveated parts (`pretrain.foveated`): a tiny DINOv2 + Llama built with random weights ->
# trained together as the seed's multi-token baseline on the shapes corpus -> shipped as the two
# parts, fp16, with provenance; the foveated default builds its runs from them.
use rule build_foveated_model as build_pretrain_foveated with:
    output:
        parts=directory("results/pretrain/{model}/random"),
    log:
        "logs/pretrain/{model}/build.log",
    wildcard_constraints:
        model=one_of(pretrain_foveated_models()),
    params:
        spec=pretrain_foveated_build_spec,


use rule train_foveated as pretrain_foveated with:
    input:
        unpack(pretrain_foveated_inputs),
    output:
        model=directory("results/pretrain/{run}/model"),
        log="results/pretrain/{run}/log.jsonl",
        evals="results/pretrain/{run}/evals.jsonl",
        attention=directory("results/pretrain/{run}/attention"),
        evaluation="results/pretrain/{run}/eval.json",
    log:
        "logs/pretrain/{run}/train.log",
    benchmark:
        "results/benchmarks/pretrain_foveated/{run}.tsv"
    wildcard_constraints:
        run=one_of(pretrain_foveated_models()),
    threads: pretrain_foveated_threads
    resources:
        **gpu_resources(pretrain_foveated_gpus),
    params:
        settings=pretrain_foveated_settings,
        parts=pretrain_foveated_parts,
        device=setting(pretrain_foveated_spec, "device", wildcard="run"),
        state="results/pretrain/{run}/state",
        gpus=pretrain_foveated_gpus,


rule pretrain_foveated_first_steps:
    input:
        unpack(pretrain_foveated_inputs),
    output:
        digests="results/pretrain/{run}/first_steps.json",
    log:
        "logs/pretrain/{run}/first_steps.log",
    wildcard_constraints:
        run=one_of(pretrain_foveated_models()),
    conda:
        "../envs/vlmflow.yaml"
    params:
        settings=pretrain_foveated_settings,
        parts=pretrain_foveated_parts,
        steps=2,
    script:
        "../workflow/scripts/pretrain/first_steps_foveated.py"


rule package_foveated_parts:
    input:
        unpack(pretrain_foveated_package_inputs),
    output:
        parts=directory("results/pretrain/zoo/{model}/samples-{samples}"),
    log:
        "logs/pretrain/{model}/package-{samples}.log",
    wildcard_constraints:
        model=one_of(pretrain_foveated_models()),
        samples=r"\d+",
    conda:
        "../envs/vlmflow.yaml"
    params:
        config=pretrain_foveated_provenance_config,
        dtype=ZOO_DTYPE,
    script:
        "../workflow/scripts/pretrain/package_foveated.py"


# The VL-conditioning study's tiny Z-Image + Qwen3-VL (`pretrain.conditioning`): built with random
# weights -> each part trained by its own objective on the captioned scenes (text encoder: language
# modelling; VAE: reconstruction; transformer: flow matching on the trained encoder's embeddings and
# the VAE's latents; VLM: captioning, its language model starting as the trained encoder)
# -> the pipeline and VLM in fp16 with their provenance (caption following measured on the
# default's scenes), which the conditioning default uses as it would Z-Image-Turbo and Qwen3-VL.
use rule synth_captioned_scenes as synth_pretrain_scenes with:
    output:
        scenes=directory("resources/raw/pretrain/scenes/{split}"),
    log:
        "logs/synth/pretrain_scenes_{split}.log",
    wildcard_constraints:
        split="train",
    params:
        n=pretrain_synth_size("scenes"),
        seed=pretrain_synth_seed(),
        image_size=synthetic().get("scene_image_size", 64),


use rule build_conditioning_model as build_pretrain_conditioning with:
    output:
        parts=directory("results/pretrain/{model}/random"),
    log:
        "logs/pretrain/{model}/build.log",
    wildcard_constraints:
        model=one_of(pretrain_conditioning_models()),
    params:
        spec=pretrain_conditioning_build_spec,


rule pretrain_conditioning_part:
    input:
        unpack(pretrain_conditioning_part_inputs),
    output:
        part=directory("results/pretrain/{model}/{part}"),
        log="results/pretrain/{model}/{part}.jsonl",
    log:
        "logs/pretrain/{model}/{part}.log",
    benchmark:
        "results/benchmarks/pretrain_conditioning/{model}.{part}.tsv"
    wildcard_constraints:
        model=one_of(pretrain_conditioning_models()),
        part=one_of(ZIMAGE_PARTS),
    conda:
        "../envs/vlmflow.yaml"
    threads: pretrain_conditioning_threads
    params:
        settings=pretrain_conditioning_part_settings,
        state="results/pretrain/{model}/{part}.state",
    script:
        "../workflow/scripts/pretrain/conditioning_part.py"


rule pretrain_conditioning_first_steps:
    input:
        random="results/pretrain/{model}/random",
        scenes="resources/raw/pretrain/scenes/train",
    output:
        digests="results/pretrain/{model}/first_steps.json",
    log:
        "logs/pretrain/{model}/first_steps.log",
    wildcard_constraints:
        model=one_of(pretrain_conditioning_models()),
    conda:
        "../envs/vlmflow.yaml"
    params:
        config=pretrain_conditioning_provenance_config,
        steps=2,
    script:
        "../workflow/scripts/pretrain/first_steps_conditioning.py"


rule package_conditioning_pipeline:
    input:
        unpack(pretrain_conditioning_package_inputs),
    output:
        folder=directory("results/pretrain/zoo/{model}"),
    log:
        "logs/pretrain/{model}/package.log",
    benchmark:
        "results/benchmarks/package_conditioning_pipeline/{model}.tsv"
    wildcard_constraints:
        model=one_of(pretrain_conditioning_models()),
    conda:
        "../envs/vlmflow.yaml"
    threads: pretrain_conditioning_threads
    params:
        config=pretrain_conditioning_provenance_config,
        dtype=ZOO_DTYPE,
    script:
        "../workflow/scripts/pretrain/package_conditioning.py"


rule pretrain:
    input:
        pretrain_outputs(),


# The shipped zoo's pretraining, plotted from its provenance by every default run.
rule plot_pretraining:
    input:
        provenance=zoo_provenance,
    output:
        plot=report(
            "results/pretrain/{model}/pretraining.png",
            caption="../workflow/report/pretraining.rst",
            category="Pretraining",
        ),
    log:
        "logs/pretrain/{model}/plot.log",
    wildcard_constraints:
        model=one_of(zoo_models()),
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/pretrain/plot.py"


rule plot_conditioning_pretraining:
    input:
        provenance="resources/zoo/{model}/provenance.json",
    output:
        plot=report(
            "results/pretrain/{model}/pretraining.png",
            caption="../workflow/report/conditioning_pretraining.rst",
            category="Pretraining",
        ),
    log:
        "logs/pretrain/{model}/plot.log",
    wildcard_constraints:
        model=one_of(zoo_conditioning_models()),
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/pretrain/plot_conditioning.py"
