"""Glue for rule merge_swap_scales: every scale in one summary CSV and the cross-scale plots."""

from vlmflow.core.io import atomic_write
from vlmflow.core.scripting import log_to
from vlmflow.probing.analysis import merge_scales
from vlmflow.probing.plots import plot_ablation, plot_accuracy, plot_alignment, plot_consistency

log = log_to(snakemake.log[0])
scales = snakemake.params.scales
summary = merge_scales(snakemake.params.out_dir, scales)
with atomic_write(snakemake.output.summary, "wb") as handle:
    summary.write_csv(handle)
order = list(scales)
plot_consistency(summary, order, "sign_corrected_consistency", snakemake.output.sign_corrected)
plot_consistency(summary, order, "within_cat_consistency", snakemake.output.within)
plot_alignment(summary, order, snakemake.output.alignment)
plot_accuracy(summary, order, snakemake.output.accuracy, snakemake.output.trajectory)
layers = sorted(summary["layer"].drop_nulls().unique())
layer = layers[snakemake.params.summary_layer] if layers else 0
plot_ablation(summary, order, layer, snakemake.output.ablation)
log.info("%d rows over scales %s; ablation at layer %d", summary.height, ", ".join(order), layer)
