"""Glue for rule compare_attention: did a guide mode change the guide's attention (the seed's table)?"""

from vlmflow.core.io import atomic_write, read_jsonl, write_json
from vlmflow.core.scripting import log_to
from vlmflow.guided.attention_stats import compare_runs, comparison_markdown, read_importance

log = log_to(snakemake.log[0])
spec, keep = snakemake.params.spec, snakemake.params.keep
rows = {
    role: {r["question_id"]: r for r in read_jsonl(snakemake.input[f"{role}_rows"])} for role in ("baseline", "variant")
}
small = {role: {q: r["guide"]["prediction"] for q, r in rows[role].items()} for role in rows}
large = {role: {q: r["keep"][keep]["prediction"] for q, r in rows[role].items()} for role in rows}
stats = compare_runs(
    read_importance(snakemake.input.baseline_importance),
    read_importance(snakemake.input.variant_importance),
    small["baseline"],
    small["variant"],
    large["baseline"],
    large["variant"],
)
write_json(
    snakemake.output.stats,
    {"baseline": spec["baseline"], "variant": spec["variant"], "keep_ratio": spec["keep_ratio"], **stats},
)
title = f"{snakemake.wildcards.comparison}: guide attention, {spec['baseline']} vs {spec['variant']} (decode answers at keep {keep})"
with atomic_write(snakemake.output.markdown) as handle:
    handle.write(comparison_markdown(stats, title, spec["baseline"], spec["variant"]))
log.info("%s", stats)
