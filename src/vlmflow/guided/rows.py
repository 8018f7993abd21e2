"""The rows a pruning run writes, one per question: the decode model's answer at each keep ratio
(`keep`, keyed by `keep_label`) and, for `guided`, the guide's own answer (`guide`).

Kept free of torch, so the many small evaluation jobs that read them start fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def keep_label(ratio: float) -> str:
    """How a keep ratio is written in paths and row keys: 1, 0.4, 0.09."""
    return f"{ratio:g}"


def keep_predictions(rows: Sequence[dict[str, Any]], label: str) -> list[dict[str, Any]]:
    """The prediction rows of one keep ratio (or, for label "guide", the guide's own answers), in
    the shape `vlmflow.data.evaluate` reads."""
    out = []
    for row in rows:
        if label == "guide":
            if "guide" not in row:
                raise ValueError(f"question {row['question_id']}: no guide answer (only method 'guided' runs a guide)")
            answer = {k: row["guide"][k] for k in ("prediction", "raw_output")}
        elif label in row["keep"]:
            answer = row["keep"][label]
        else:
            raise ValueError(
                f"question {row['question_id']}: no answers at keep ratio {label} (have {sorted(row['keep'])})"
            )
        out.append({"question_id": row["question_id"], "question": row["question"], **answer})
    return out
