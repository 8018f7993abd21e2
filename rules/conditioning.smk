# VL conditioning (seed 003): a VLM's hidden states, extracted, normalised and blended with the
# reference text encoder's, condition a Z-Image diffusion transformer. Each experiment generates
# its images from the same noise (metadata.json, comparison_grid.png); the dimension analysis
# compares every VLM layer and token type with the reference encoder.


rule generate_conditioning:
    input:
        unpack(conditioning_experiment_inputs),
    output:
        metadata="results/conditioning/{experiment}/metadata.json",
        reference="results/conditioning/{experiment}/reference.png",
    params:
        spec=lambda wildcards: conditioning_experiment(wildcards.experiment),
        model=lambda wildcards: conditioning_model(
            conditioning_experiment(wildcards.experiment)["model"], f"conditioning.experiments.{wildcards.experiment}"
        ),
    wildcard_constraints:
        experiment=one_of(conditioning_experiments()),
    threads: 2
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=240,
    log:
        "logs/conditioning/{experiment}/generate.log",
    benchmark:
        "results/benchmarks/generate_conditioning/{experiment}.tsv"
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/generate_conditioning.py"


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
    wildcard_constraints:
        experiment=one_of(conditioning_experiments()),
    log:
        "logs/conditioning/{experiment}/grid.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/conditioning_grid.py"


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
    params:
        spec=conditioning_analysis(),
        model=lambda wildcards: conditioning_model(conditioning_analysis()["model"], "conditioning.analysis"),
    threads: 2
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=120,
    log:
        "logs/conditioning/dimensions.log",
    benchmark:
        "results/benchmarks/conditioning_dimensions.tsv"
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/conditioning_dimensions.py"


rule conditioning_report:
    input:
        metadata=expand("results/conditioning/{experiment}/metadata.json", experiment=conditioning_experiments()),
        layers="results/conditioning/dimensions/layers.csv" if conditioning_analysis() else [],
    output:
        summary="results/conditioning/summary.csv",
    params:
        models={name: conditioning_experiment(name)["model"] for name in conditioning_experiments()},
        analysis_model=(conditioning_analysis() or {}).get("model"),
    log:
        "logs/conditioning/report.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/conditioning_report.py"
