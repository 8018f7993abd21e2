"""The foveated-VLM sweeps as config: which runs a sweep compares, who wins, what gets skipped.

A sweep names its runs and the metric it is decided by (the last evaluation of each run on the
fixed val set). A sweep may be skipped on another sweep's outcome, as the seed skips the LR sweep
when freezing both backbones (F1) wins the freeze sweep: only the connector's rate matters then.
Light on imports: the workflow's decisions run without torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vlmflow.core.io import read_json, read_jsonl


def lower_is_better(metric: str) -> bool:
    return "loss" in metric


def final_value(evals_path: str | Path, metric: str) -> float:
    """The metric at a run's last evaluation; NaN where it diverged (logged as null)."""
    rows = read_jsonl(evals_path)
    if not rows:
        raise ValueError(f"{evals_path}: no evaluations")
    if metric not in rows[-1]:
        raise ValueError(f"{evals_path}: the last evaluation has no '{metric}' (it has {sorted(rows[-1])})")
    value = rows[-1][metric]
    return math.nan if value is None else float(value)


def decide(evals: Mapping[str, str | Path], metric: str) -> dict[str, Any]:
    """The winner of a sweep: the best final `metric`; a diverged run (NaN) never wins."""
    values = {run: final_value(path, metric) for run, path in evals.items()}
    finite = {run: v for run, v in values.items() if math.isfinite(v)}
    if not finite:
        raise ValueError(f"no run of the sweep has a finite {metric}: {values}")
    pick = min if lower_is_better(metric) else max
    winner = pick(finite, key=finite.get)
    diverged = {run: None for run in values if run not in finite}  # null in strict JSON
    return {"metric": metric, "values": {**values, **diverged}, "winner": winner}


def is_skipped(sweep: Mapping[str, Any], decisions: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether a sweep's `skip_when: {sweep: <other>, winner: <run>}` condition holds."""
    condition = sweep.get("skip_when")
    return bool(condition) and decisions[condition["sweep"]]["winner"] == condition["winner"]


def active_runs(runs: Sequence[str], sweeps: Mapping[str, Mapping[str, Any]], skipped: set[str]) -> list[str]:
    """The runs to train: every run but those that belong to skipped sweeps only."""
    kept = {run for name, sweep in sweeps.items() if name not in skipped for run in sweep["runs"]}
    in_sweeps = {run for sweep in sweeps.values() for run in sweep["runs"]}
    return [run for run in runs if run in kept or run not in in_sweeps]


def summary_rows(
    run: str, model: str, data: str, evaluation_path: str | Path, evals_path: str | Path
) -> list[dict[str, Any]]:
    """summary.csv rows of one run: each evaluation mode's loss and accuracy (overall and per kind),
    and from training's last evaluation the fine/coarse losses and the attention entropy."""
    evaluation = read_json(evaluation_path)
    base = {
        "experiment": run,
        "family": "foveated",
        "model": model,
        "dataset": data,
        "source": str(evaluation_path),
    }
    rows = []
    for mode, scores in evaluation["modes"].items():
        for key, value in scores.items():
            if value is not None and key != "n":
                rows.append(
                    base
                    | {"n": scores.get("n"), "n_of": "examples", "metric": f"{key}/mode={mode}", "value": float(value)}
                )
    rows.append(
        base
        | {
            "n": None,
            "metric": "visual_tokens_per_frame",
            "value": float(evaluation["visual_tokens_per_frame"]),
        }
    )
    last = read_jsonl(evals_path)[-1]
    for key in ("val_loss_fine", "val_loss_coarse", "attention_entropy"):
        if last.get(key) is not None:
            rows.append(
                base
                | {
                    "n": None,
                    "metric": f"train_eval/{key}",
                    "value": float(last[key]),
                    "source": str(evals_path),
                }
            )
    if last.get("val_loss_fine") is not None and last.get("val_loss_coarse"):
        ratio = last["val_loss_fine"] / last["val_loss_coarse"]
        rows.append(
            base
            | {
                "n": None,
                "metric": "train_eval/loss_ratio",
                "value": ratio,
                "source": str(evals_path),
            }
        )
    return rows


def decision_rows(sweep: str, decision: Mapping[str, Any] | None, runs: Sequence[str]) -> list[dict[str, Any]]:
    """One row per run of a sweep: 1 for the winner, 0 for the others; a skipped sweep says so."""
    base = {
        "experiment": f"sweep.{sweep}",
        "family": "foveated",
        "model": None,
        "dataset": None,
        "n": None,
    }
    if decision is None:
        return [base | {"metric": "skipped", "value": 1.0, "source": None}]
    return [
        base
        | {
            "metric": f"winner/run={run}",
            "value": float(run == decision["winner"]),
            "source": decision.get("source"),
        }
        for run in runs
    ]
