# Hidden-state probing (seed 004, "Why Far Looks Up"): for every scale (checkpoint) the last prompt
# token's hidden state per decoder layer for both questions of every swap pair, and of the vertical
# pair asked on each distance scene (cross-group quads, from the dataset's bbox cache), to NPZ;
# then per scale the accuracies, consistencies and cross-group alignment (csv/, json/, PCA plots);
# then one merge across scales (summary CSV, consistency / alignment / accuracy / ablation plots).
# With `shards`, each scale's extraction is split into jobs over the pairs and gathered.


include: "functions/probing.smk"


rule extract_swap_features:
    input:
        unpack(probing_extract_inputs),
    output:
        vectors="results/probing/{experiment}/npz/vectors_{scale}.npz",
        cross="results/probing/{experiment}/npz/cross_group_vectors_{scale}.npz",
    log:
        "logs/probing/{experiment}/extract_{scale}.log",
    benchmark:
        "results/benchmarks/extract_swap_features/{experiment}_{scale}.tsv"
    wildcard_constraints:
        experiment=one_of(unsharded_probing_experiments()),
        scale=one_of(probing_scale_names()),
    conda:
        "../envs/vlmflow.yaml"
    threads: setting(probing_spec, "threads")
    resources:
        **gpu_resources(setting(probing_spec, "gpus")),
    params:
        generation=probing_generation,
        layers=setting(probing_spec, "layers"),
        dtype=setting(probing_spec, "dtype"),
        vertical_template=setting(probing_spec, "vertical_template"),
        device=setting(probing_spec, "device"),
        placement=placement(probing_spec),
        trust_remote_code=probing_scale_model,
    script:
        "../workflow/scripts/probing/extract.py"


use rule extract_swap_features as extract_swap_features_shard with:
    output:
        vectors="results/probing/{experiment}/npz/shards/{scale}/{shard}.vectors.npz",
        vertical="results/probing/{experiment}/npz/shards/{scale}/{shard}.vertical.npz",
    log:
        "logs/probing/{experiment}/extract_{scale}-{shard}.log",
    benchmark:
        "results/benchmarks/extract_swap_features/{experiment}_{scale}-{shard}.tsv"
    wildcard_constraints:
        experiment=one_of(sharded_probing_experiments()),
        scale=one_of(probing_scale_names()),
        shard=r"\d+-of-\d+",


rule gather_swap_features:
    input:
        cache=probing_cache,
        vectors=probing_shard_files("vectors"),
        vertical=probing_shard_files("vertical"),
    output:
        vectors="results/probing/{experiment}/npz/vectors_{scale}.npz",
        cross="results/probing/{experiment}/npz/cross_group_vectors_{scale}.npz",
    log:
        "logs/probing/{experiment}/gather_{scale}.log",
    wildcard_constraints:
        experiment=one_of(sharded_probing_experiments()),
        scale=one_of(probing_scale_names()),
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/probing/gather.py"


rule analyse_swap_scale:
    input:
        vectors="results/probing/{experiment}/npz/vectors_{scale}.npz",
        cross="results/probing/{experiment}/npz/cross_group_vectors_{scale}.npz",
    output:
        pred_stats="results/probing/{experiment}/json/pred_stats_{scale}.json",
        validity="results/probing/{experiment}/json/category_validity_{scale}.json",
        within=expand(
            "results/probing/{{experiment}}/json/within_cat_consistency_{{scale}}_{tag}.json", tag=PROBING_TAGS
        ),
        sign_corrected=expand(
            "results/probing/{{experiment}}/json/sign_corrected_consistency_{{scale}}_{tag}.json", tag=PROBING_TAGS
        ),
        cross=expand("results/probing/{{experiment}}/json/cross_alignment_{{scale}}_{tag}.json", tag=PROBING_TAGS),
        consistency="results/probing/{experiment}/csv/consistency_{scale}.csv",
        alignment="results/probing/{experiment}/csv/cross_alignment_{scale}.csv",
        similarity="results/probing/{experiment}/csv/delta_similarity_{scale}.csv",
        pca=report(
            "results/probing/{experiment}/plots/pca/pca_{scale}.png",
            caption="../workflow/report/probing_pca.rst",
            category="Hidden-state probing",
            subcategory="{experiment}",
        ),
        pca_3d="results/probing/{experiment}/plots/pca_3d/pca_{scale}.png",
    log:
        "logs/probing/{experiment}/analyse_{scale}.log",
    wildcard_constraints:
        experiment=one_of(probing_experiments()),
        scale=one_of(probing_scale_names()),
    conda:
        "../envs/vlmflow.yaml"
    params:
        permutations=setting(probing_spec, "permutations"),
        seed=setting(probing_spec, "seed"),
        reliable_threshold=setting(probing_spec, "reliable_threshold"),
        out_dir=probing_folder,
    script:
        "../workflow/scripts/probing/analyse_scale.py"


rule merge_swap_scales:
    input:
        analyses=probing_analysis,
    output:
        summary="results/probing/{experiment}/csv/summary.csv",
        sign_corrected=report(
            "results/probing/{experiment}/plots/sign_corrected_consistency.png",
            caption="../workflow/report/probing_scales.rst",
            category="Hidden-state probing",
            subcategory="{experiment}",
        ),
        within="results/probing/{experiment}/plots/within_cat_consistency.png",
        alignment=report(
            "results/probing/{experiment}/plots/cross_alignment.png",
            caption="../workflow/report/probing_scales.rst",
            category="Hidden-state probing",
            subcategory="{experiment}",
        ),
        accuracy="results/probing/{experiment}/plots/accuracy/accuracy_bars.png",
        trajectory="results/probing/{experiment}/plots/accuracy/accuracy_trajectory.png",
        ablation=report(
            "results/probing/{experiment}/plots/ablation.png",
            caption="../workflow/report/probing_scales.rst",
            category="Hidden-state probing",
            subcategory="{experiment}",
        ),
    log:
        "logs/probing/{experiment}/merge.log",
    wildcard_constraints:
        experiment=one_of(probing_experiments()),
    conda:
        "../envs/vlmflow.yaml"
    params:
        scales=probing_scale_labels,
        summary_layer=setting(probing_spec, "summary_layer"),
        out_dir=probing_folder,
    script:
        "../workflow/scripts/probing/merge_scales.py"
