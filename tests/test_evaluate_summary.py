"""Evaluation joins predictions to records strictly; the summary is one tidy row per metric."""

from __future__ import annotations

import polars as pl
import pytest

from vlmflow.core.errors import InputError
from vlmflow.core.io import write_json, write_jsonl
from vlmflow.core.records import Record
from vlmflow.data.evaluate import evaluate_predictions
from vlmflow.report.summary import COLUMNS, write_summary


def record(qid: str, answers: list[str], answer_type: str, question_type: str) -> dict:
    return Record(qid, "img.jpg", "q?", answers, "toy", question_type, answer_type).to_json()


@pytest.fixture
def cache(tmp_path):
    path = tmp_path / "cache.jsonl"
    write_jsonl(
        path,
        [
            record("1", ["yes"] * 10, "yes/no", "is there a"),
            record("2", ["2"] * 7 + ["two"] * 3, "number", "how many"),
            record("3", ["red"] * 2 + ["blue"] * 8, "other", "what color is the"),
        ],
    )
    return path


def predictions(tmp_path, rows):
    path = tmp_path / "predictions.jsonl"
    write_jsonl(path, [{"question_id": q, "prediction": p, "raw_output": p} for q, p in rows])
    return path


def test_accuracy_with_breakdowns(cache, tmp_path):
    report = evaluate_predictions(cache, predictions(tmp_path, [("1", "yes"), ("2", "two"), ("3", "red")]))
    # "two" normalises to "2" (answers differ, so normalisation runs): 10/10 match -> 1.0.
    # "red": each annotator sees 2 or 1 other "red" answers -> (8 * 2/3 + 2 * 1/3) / 10 = 0.6.
    assert report["per_answer_type"]["number"]["accuracy"] == pytest.approx(1.0)
    assert report["per_answer_type"]["other"]["accuracy"] == pytest.approx(0.6)
    assert report["accuracy"] == pytest.approx((1 + 1 + 0.6) / 3)
    assert report["per_question_type"]["is there a"] == {"n": 1, "accuracy": 1.0}


def test_dataset_format_reaches_the_lmms_eval_scorer(tmp_path):
    # lmms-eval's TextVQA processing deletes the comma ("redwhite" != "red white": 0.0); its
    # VQAv2 processing turns it into a space (1.0); the official variant skips normalisation for
    # unanimous answers ("red,white" != "red white": 0.0) whatever the format.
    path = tmp_path / "cache.jsonl"
    write_jsonl(path, [record("1", ["red white"] * 10, "other", "what is")])
    preds = predictions(tmp_path, [("1", "red,white")])
    expected = {("lmms_eval", "textvqa"): 0.0, ("lmms_eval", "vqav2"): 1.0, ("lmms_eval", None): 1.0}
    expected |= {("official", fmt): 0.0 for fmt in ("textvqa", "vqav2", None)}
    for (variant, fmt), accuracy in expected.items():
        report = evaluate_predictions(path, preds, variant=variant, dataset_format=fmt)
        assert report["accuracy"] == accuracy, (variant, fmt)
        assert report["variant"] == variant and report["dataset_format"] == fmt
    with pytest.raises(ValueError, match="unknown dataset format 'TextVQA'"):
        evaluate_predictions(path, preds, dataset_format="TextVQA")


def test_missing_and_unknown_predictions_are_errors(cache, tmp_path):
    with pytest.raises(InputError, match=r"1 of 3 questions have no prediction"):
        evaluate_predictions(cache, predictions(tmp_path, [("1", "yes"), ("2", "2")]))
    with pytest.raises(InputError, match=r"line 4.*question id '9' is not in"):
        evaluate_predictions(cache, predictions(tmp_path, [("1", "a"), ("2", "b"), ("3", "c"), ("9", "d")]))
    with pytest.raises(InputError, match=r"line 2.*duplicate prediction for '1'"):
        evaluate_predictions(cache, predictions(tmp_path, [("1", "a"), ("1", "b")]))


def test_swap_pairs_score_both_questions_of_a_pair(tmp_path):
    # Pair a: both right; pair b: one of two right; pair c: both wrong -> both-correct 1/3.
    path = tmp_path / "cache.jsonl"
    rows = []
    for pair, (orig, swap) in {"a": ("left", "right"), "b": ("above", "under"), "c": ("far", "close")}.items():
        for role, answer in (("orig", orig), ("swap", swap)):
            row = Record(f"{pair}_{role}", "img.jpg", "q?", [answer], "swap", answer).to_json()
            rows.append(row | {"source": {"pair_id": pair, "role": role}})
    write_jsonl(path, rows)
    guesses = {"a_orig": "left", "a_swap": "right", "b_orig": "above", "b_swap": "above", "c_orig": "x", "c_swap": "y"}
    report = evaluate_predictions(path, predictions(tmp_path, guesses.items()), metric="exact_match")
    assert report["accuracy"] == pytest.approx(3 / 6)
    assert report["both_correct"] == {"n": 3, "accuracy": pytest.approx(1 / 3)}
    metrics = tmp_path / "metrics.json"
    write_json(metrics, report)
    out = tmp_path / "summary.csv"
    write_summary([{"experiment": "e", "family": "vqa", "model": "m", "dataset": "swap", "source": str(metrics)}], out)
    row = pl.read_csv(out).filter(pl.col("metric") == "exact_match/both_correct")
    assert row["n"].to_list() == [3] and row["value"][0] == pytest.approx(1 / 3)
    assert row["n_of"].to_list() == ["pairs"] and row["kind"].to_list() == ["result"]


def test_summary_is_tidy(cache, tmp_path):
    metrics = tmp_path / "metrics.json"
    report = evaluate_predictions(cache, predictions(tmp_path, [("1", "no"), ("2", "2"), ("3", "blue")]))
    write_json(metrics, report)
    entry = {"experiment": "e1", "family": "vqa", "model": "m", "dataset": "d", "source": str(metrics)}
    out = tmp_path / "summary.csv"
    write_summary([entry], out)
    frame = pl.read_csv(out)
    assert frame.columns == COLUMNS
    overall = frame.filter(pl.col("metric") == "vqa_accuracy")
    assert overall["n"].to_list() == [3] and overall["value"][0] == pytest.approx(report["accuracy"])
    assert set(frame["metric"]) >= {"vqa_accuracy/answer_type=yes/no", "vqa_accuracy/question_type=how many"}
    assert frame.filter(pl.col("metric") == "vqa_accuracy/answer_type=yes/no")["value"][0] == 0.0


def test_statistics_entries_give_one_row_per_number(tmp_path):
    stats = tmp_path / "compare.json"
    write_json(
        stats, {"baseline": "a", "variant": "b", "keep_ratio": 0.4, "n": 50, "avg_l1": 0.13, "top1_same_count": 50}
    )
    entry = {
        "experiment": "cot",
        "family": "guided",
        "model": "g",
        "dataset": "d",
        "kind": "statistics",
        "source": str(stats),
    }
    frame = write_summary([entry], tmp_path / "summary.csv")
    assert dict(zip(frame["metric"], frame["value"])) == {"avg_l1": 0.13, "top1_same_count": 50.0}
    assert set(frame["n"]) == {50}


def test_probing_entries_give_one_experiment_per_scale(tmp_path):
    import polars as pl

    source = tmp_path / "probing.csv"
    pl.DataFrame(
        {
            "scale": ["vanilla", "step-4", "step-4"],
            "model": ["guide", "sft/step-4", "sft/step-4"],
            "tag": ["all", "all", "both_correct"],
            "metric": ["both_accuracy", "sign_corrected_consistency", "cross_alignment"],
            "unit": ["all", "vertical", "quads"],
            "layer": [None, 3, 0],
            "value": [0.25, 0.5, 0.75],
            "n": [8, 4, 2],
        }  # fmt: skip
    ).write_csv(source)
    entry = {
        "experiment": "swap",
        "family": "probing",
        "model": "guide+sft",
        "dataset": "swap_val",
        "kind": "probing",
        "source": str(source),
    }
    frame = write_summary([entry], tmp_path / "summary.csv")
    assert frame["experiment"].to_list() == ["swap.vanilla", "swap.step-4", "swap.step-4"]
    assert frame["stage"].to_list() == ["vanilla", "step-4", "step-4"]
    assert frame["n_of"].to_list() == ["pairs", "pairs", "quads"]
    assert frame["model"].to_list() == ["guide", "sft/step-4", "sft/step-4"]
    assert frame["metric"].to_list() == [
        "both_accuracy/unit=all",
        "sign_corrected_consistency/unit=vertical/layer=3",
        "cross_alignment/tag=both_correct/unit=quads/layer=0",
    ]
    assert frame["value"].to_list() == [0.25, 0.5, 0.75] and frame["n"].to_list() == [8, 4, 2]


def test_training_rows_say_their_stage_and_which_numbers_are_timings(tmp_path):
    log = tmp_path / "train_log.jsonl"
    log.write_text("".join(f'{{"step": {i}, "loss": {3.0 - i}, "samples_per_s": 40.0}}\n' for i in range(1, 3)))
    entry = {"experiment": "sft", "family": "finetune", "model": "sft", "dataset": "d", "kind": "training"}
    frame = write_summary([entry | {"source": str(log)}], tmp_path / "summary.csv")
    kinds = dict(zip(frame["metric"], frame["kind"], strict=True))
    assert kinds == {"train_loss_final": "training", "train_loss_first": "training", "train_samples_per_s": "timing"}
    assert set(frame["stage"]) == {"step-2"} and set(frame["n_of"]) == {"steps"} and set(frame["n"]) == {2}
