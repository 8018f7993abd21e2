"""Did the guide's chain of thought change its attention? The seed's question, answered as a table.

In guided visual-token pruning a small guide VLM scores every visual token for each question and a
large decode model answers from the tokens the scores keep. Changing the guide's prompt (e.g. a
short chain of thought) is only interesting if it moves those scores; this module saves the raw
per-question scores of a guide run and compares two runs: how far the normalised distributions
move (L1, Jensen-Shannon), whether the top tokens stay the same, whether the distribution gets
sharper or flatter (entropy), and how many guide and decode answers changed with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from vlmflow.core.errors import InputError
from vlmflow.core.io import atomic_write

IMPORTANCE_SCHEMA = pl.Schema({"question_id": pl.String, "importance": pl.List(pl.Float64), "n_visual": pl.Int64})
COUNT_KEYS = ("top1_same_count", "changed_small_answer_count", "changed_large_answer_count")


def write_importance(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write raw (unnormalised) guide scores, one row per question, as parquet, atomically."""
    frame = pl.DataFrame(
        {
            "question_id": [str(row["question_id"]) for row in rows],
            "importance": [[float(x) for x in row["importance"]] for row in rows],
            "n_visual": [len(row["importance"]) for row in rows],
        },
        schema=IMPORTANCE_SCHEMA,
    )
    with atomic_write(path, "wb") as handle:
        frame.write_parquet(handle)


def gather_importance(parts: Sequence[str | Path], path: str | Path) -> None:
    """The shards' importance files, in shard order, as the one file an unsharded run writes."""
    frame = pl.concat([pl.read_parquet(part) for part in parts])
    write_importance(path, frame.select("question_id", "importance").to_dicts())


def read_importance(path: str | Path) -> dict[str, np.ndarray]:
    """question_id -> float64 score vector, from a file written by `write_importance`."""
    frame = pl.read_parquet(path)
    missing = [name for name in ("question_id", "importance") if name not in frame.columns]
    if missing:
        has = ", ".join(frame.columns)
        raise InputError(path, f"missing column(s) {', '.join(missing)}; the file has {has}")
    return {
        qid: np.asarray(scores, dtype=np.float64)
        for qid, scores in zip(frame["question_id"], frame["importance"].to_list(), strict=True)
    }


def normalise(scores: np.ndarray) -> np.ndarray:
    """Non-negative scores as a probability distribution; all zeros become uniform."""
    scores = np.asarray(scores, dtype=np.float64)
    if (scores < 0).any():
        raise ValueError("importance scores must be non-negative")
    total = scores.sum()
    if total == 0:
        return np.full(scores.shape, 1.0 / scores.size)
    return scores / total


def entropy(p: np.ndarray) -> float:
    """Shannon entropy in nats, with 0 * log 0 = 0."""
    p = np.asarray(p, dtype=np.float64)
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum())


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) in nats over the support of p (q > 0 wherever p > 0 is the caller's job)."""
    mask = p > 0
    return float((p[mask] * np.log(p[mask] / q[mask])).sum())


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in nats, so in [0, ln 2]."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    m = (p + q) / 2
    return 0.5 * _kl(p, m) + 0.5 * _kl(q, m)


def top_k_overlap(p: np.ndarray, q: np.ndarray, k: int) -> int:
    """How many of the k highest-scored indices p and q share (ties go to the lower index)."""
    k = min(k, len(p))
    top_p = np.argsort(-np.asarray(p), kind="stable")[:k]
    top_q = np.argsort(-np.asarray(q), kind="stable")[:k]
    return len(set(top_p.tolist()) & set(top_q.tolist()))


def _same_answer(x: str, y: str) -> bool:
    return " ".join(x.lower().split()) == " ".join(y.lower().split())


def compare_runs(
    a: Mapping[str, np.ndarray],
    b: Mapping[str, np.ndarray],
    small_a: Mapping[str, str],
    small_b: Mapping[str, str],
    large_a: Mapping[str, str],
    large_b: Mapping[str, str],
    top_k: int = 16,
) -> dict[str, Any]:
    """Compare run b against run a over their shared question ids: the seed's table as a dict."""
    qids = sorted(set(a) & set(b))
    if not qids:
        raise ValueError(f"no question ids in common (run a has {len(a)}, run b has {len(b)})")
    l1, jsd, overlap, entropy_delta = [], [], [], []
    top1_same = changed_small = changed_large = 0
    for qid in qids:
        if len(a[qid]) != len(b[qid]):
            raise ValueError(f"question {qid}: {len(a[qid])} visual tokens in run a, {len(b[qid])} in run b")
        p, q = normalise(a[qid]), normalise(b[qid])
        l1.append(float(np.abs(p - q).sum()))
        jsd.append(jensen_shannon(p, q))
        overlap.append(top_k_overlap(p, q, top_k))
        entropy_delta.append(entropy(q) - entropy(p))
        top1_same += int(np.argmax(p) == np.argmax(q))
        changed_small += int(not _same_answer(small_a[qid], small_b[qid]))
        changed_large += int(not _same_answer(large_a[qid], large_b[qid]))
    return {
        "n": len(qids),
        "avg_l1": float(np.mean(l1)),
        "median_l1": float(np.median(l1)),
        "avg_jsd": float(np.mean(jsd)),
        f"avg_top{top_k}_overlap": float(np.mean(overlap)),
        "top1_same_count": top1_same,
        "avg_entropy_delta": float(np.mean(entropy_delta)),
        "changed_small_answer_count": changed_small,
        "changed_large_answer_count": changed_large,
    }


def comparison_markdown(stats: dict[str, Any], title: str, a_name: str, b_name: str) -> str:
    """A markdown section: title, the two runs, and a `statistic | value` table."""
    n = stats["n"]
    lines = [f"## {title}", "", f"Run a: `{a_name}`; run b: `{b_name}` (deltas are b minus a).", ""]
    lines += ["| statistic | value |", "|---|---:|"]
    for key, value in stats.items():
        if key in COUNT_KEYS:
            shown = f"{value} / {n}"
        elif key.startswith("avg_top") and key.endswith("_overlap"):
            shown = f"{value:.2f} / {key.removeprefix('avg_top').removesuffix('_overlap')}"
        elif isinstance(value, float):
            shown = f"{value:.6f}"
        else:
            shown = str(value)
        lines.append(f"| {key} | {shown} |")
    return "\n".join(lines) + "\n"
