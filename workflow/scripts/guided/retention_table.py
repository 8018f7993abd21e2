"""Glue for rule retention_table: accuracy per (method, keep ratio) as CSV, markdown and a plot."""

from statistics import mean

from vlmflow.core.io import read_jsonl
from vlmflow.core.scripting import log_to
from vlmflow.guided.report import retention_frame, write_retention

log = log_to(snakemake.log[0])
rows = {path.split("/")[-2]: list(read_jsonl(path)) for path in snakemake.input.rows}
runs = []
for (method, answers), metrics in zip(snakemake.params.answer_sets, snakemake.input.metrics, strict=True):
    label = answers.removeprefix("keep-")
    guide_alone = answers == "guide"
    runs.append(
        {
            "method": "guide alone" if guide_alone else method,
            "keep_ratio": None if guide_alone else float(label),
            "visual_tokens": mean(
                r["visual_tokens"] if guide_alone else r["keep"][label]["visual_tokens"] for r in rows[method]
            ),
            "metrics": metrics,
        }
    )
frame = retention_frame(runs)
write_retention(frame, snakemake.params.title, snakemake.output.csv, snakemake.output.markdown, snakemake.output.plot)
log.info("%s\n%s", snakemake.params.title, frame)
