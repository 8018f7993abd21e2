"""Sweep decisions: the best final metric wins, a diverged run never does, and a sweep skipped on
another's outcome drops the runs that only it needed."""

from __future__ import annotations

import json
import math

import pytest

from vlmflow.foveated.sweeps import active_runs, decide, decision_rows, is_skipped

SWEEPS = {
    "freeze": {"runs": ["F1", "F2", "F3"]},
    "lr": {"runs": ["F3", "LR2", "LR3"], "skip_when": {"sweep": "freeze", "winner": "F1"}},
    "architecture": {"runs": ["F3", "A1"]},
}


def evals(tmp_path, values: dict[str, float], metric: str = "val_loss") -> dict[str, str]:
    paths = {}
    for run, value in values.items():
        path = tmp_path / f"{run}.jsonl"
        rows = [{"step": 0, metric: 9.0}, {"step": 10, metric: value}]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths[run] = str(path)
    return paths


def test_the_lowest_final_loss_wins_and_a_diverged_run_never_does(tmp_path):
    decision = decide(evals(tmp_path, {"F1": 2.0, "F2": math.nan, "F3": 1.5}), "val_loss")
    assert decision["values"]["F2"] is None
    assert decision["winner"] == "F3"
    assert decision["values"]["F1"] == 2.0
    assert decide(evals(tmp_path, {"F1": 0.2, "F3": 0.4}, "val_accuracy"), "val_accuracy")["winner"] == "F3"


def test_a_run_logged_as_diverged_never_wins(tmp_path):
    paths = evals(tmp_path, {"F1": 2.0, "F3": 1.0})
    (tmp_path / "F3.jsonl").write_text(json.dumps({"step": 10, "val_loss": None}) + "\n")
    decision = decide(paths, "val_loss")
    assert decision["winner"] == "F1" and decision["values"]["F3"] is None


def test_a_missing_metric_is_named(tmp_path):
    with pytest.raises(ValueError, match="val_accuracy"):
        decide(evals(tmp_path, {"F1": 1.0}), "val_accuracy")


@pytest.mark.parametrize(("winner", "lr_runs_trained"), [("F1", False), ("F3", True)])
def test_the_lr_sweep_is_skipped_when_connector_only_wins(winner, lr_runs_trained):
    decisions = {"freeze": {"winner": winner}}
    skipped = {name for name, sweep in SWEEPS.items() if is_skipped(sweep, decisions)}
    runs = active_runs(["F1", "F2", "F3", "LR2", "LR3", "A1", "solo"], SWEEPS, skipped)
    assert ("LR2" in runs) == ("LR3" in runs) == lr_runs_trained
    assert {"F1", "F2", "F3", "A1", "solo"} <= set(runs)  # F3 is in other sweeps, solo in none


def test_decision_rows_mark_the_winner_or_the_skip():
    rows = decision_rows("freeze", {"winner": "F2"}, ["F1", "F2"])
    assert [(r["metric"], r["value"]) for r in rows] == [("winner/run=F1", 0.0), ("winner/run=F2", 1.0)]
    assert decision_rows("lr", None, ["F3"])[0]["metric"] == "skipped"
