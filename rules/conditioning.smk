# VL conditioning (seed 003): a VLM's hidden states, extracted, normalised and blended with the
# reference text encoder's, condition a Z-Image diffusion transformer. Each experiment generates
# its images from the same noise (metadata.json, comparison_grid.png); the caption-following study
# measures how often each recipe's pictures show what many captions name; the dimension analysis
# compares every VLM layer and token type with the reference encoder.


include: "functions/conditioning.smk"


rule build_conditioning_model:
    input:
        corpus="resources/corpus.txt",
    output:
        parts=directory("resources/models/{model}"),
    log:
        "logs/build_model/{model}.log",
    wildcard_constraints:
        model=one_of(conditioning_built_models()),
    priority: PRIORITY_PREPARE
    conda:
        "../envs/vlmflow.yaml"
    params:
        spec=conditioning_build_spec,
    script:
        "../workflow/scripts/conditioning/build_model.py"


rule generate_conditioning:
    input:
        unpack(conditioning_experiment_inputs),
    output:
        metadata="results/conditioning/{experiment}/metadata.json",
        reference="results/conditioning/{experiment}/reference.png",
    log:
        "logs/conditioning/{experiment}/generate.log",
    benchmark:
        "results/benchmarks/generate_conditioning/{experiment}.tsv"
    wildcard_constraints:
        experiment=one_of(conditioning_experiments()),
    conda:
        "../envs/vlmflow.yaml"
    threads: setting(conditioning_experiment, "threads")
    resources:
        **GPU_RESOURCES,
    params:
        spec=conditioning_spec,
        model=experiment_model,
    script:
        "../workflow/scripts/conditioning/generate.py"


rule conditioning_grid:
    input:
        metadata="results/conditioning/{experiment}/metadata.json",
        reference="results/conditioning/{experiment}/reference.png",
    output:
        grid=report(
            "results/conditioning/{experiment}/comparison_grid.png",
            caption="../workflow/report/conditioning_grid.rst",
            category="VL conditioning",
        ),
    log:
        "logs/conditioning/{experiment}/grid.log",
    wildcard_constraints:
        experiment=one_of(conditioning_experiments()),
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/conditioning/grid.py"


rule conditioning_dimensions:
    input:
        unpack(conditioning_analysis_inputs),
    output:
        layers="results/conditioning/dimensions/layers.csv",
        outliers="results/conditioning/dimensions/outliers.csv",
        plot=report(
            "results/conditioning/dimensions/dimensions.png",
            caption="../workflow/report/conditioning_dimensions.rst",
            category="VL conditioning",
        ),
    log:
        "logs/conditioning/dimensions.log",
    benchmark:
        "results/benchmarks/conditioning_dimensions.tsv"
    conda:
        "../envs/vlmflow.yaml"
    threads: analysis_threads
    resources:
        **GPU_RESOURCES,
    params:
        spec=analysis_settings,
        model=analysis_model,
    script:
        "../workflow/scripts/conditioning/dimensions.py"


rule conditioning_caption_following:
    input:
        unpack(following_inputs),
    output:
        pictures="results/conditioning/caption_following/pictures.jsonl",
        rates="results/conditioning/caption_following/rates.csv",
        plot=report(
            "results/conditioning/caption_following/caption_following.png",
            caption="../workflow/report/conditioning_following.rst",
            category="VL conditioning",
        ),
    log:
        "logs/conditioning/caption_following.log",
    benchmark:
        "results/benchmarks/conditioning_caption_following.tsv"
    conda:
        "../envs/vlmflow.yaml"
    threads: following_threads
    resources:
        **GPU_RESOURCES,
    params:
        spec=following_settings,
        model=following_model,
    script:
        "../workflow/scripts/conditioning/following.py"


rule conditioning_report:
    input:
        unpack(conditioning_report_inputs),
    output:
        summary="results/conditioning/summary.csv",
    log:
        "logs/conditioning/report.log",
    conda:
        "../envs/vlmflow.yaml"
    params:
        models={name: conditioning_experiment(name)["model"] for name in conditioning_experiments()},
        analysis_model=(conditioning_analysis() or {}).get("model"),
        following_model=(conditioning_following() or {}).get("model"),
    script:
        "../workflow/scripts/conditioning/report.py"
