# Report: every experiment's metrics in one tidy table, results/summary.csv.


rule summary:
    input:
        sources=summary_inputs(),
    output:
        summary="results/summary.csv",
    params:
        entries=summary_entries(),
    log:
        "logs/summary.log",
    conda:
        "../envs/vlmflow.yaml"
    script:
        "../workflow/scripts/summary.py"
