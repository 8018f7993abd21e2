"""Batched inference: answer parsing, and resume after a real kill gives the uninterrupted file."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import make_records

from vlmflow.core.answer_modes import extract_answer
from vlmflow.core.io import write_jsonl
from vlmflow.core.models import load_vlm
from vlmflow.core.settings import GenerationSettings
from vlmflow.vqa.inference import fingerprint, run_inference

SETTINGS = GenerationSettings(batch_size=2, max_new_tokens=4, chunk_batches=1)


@pytest.mark.parametrize(
    ("raw", "answer"),
    [("red", "red"), ("  blue\nbecause", "blue"), ("Answer: 3", "3"), ("\n\nfinal answer: yes", "yes"), ("", "")],
)
def test_extract_answer(raw, answer):
    assert extract_answer(raw) == answer


@pytest.fixture
def job(tiny_checkpoints, tmp_path):
    """A 12-question inference job on the tiny Qwen2-VL, with its cache file written."""
    records = make_records(tmp_path / "images", 12)
    cache = tmp_path / "cache.jsonl"
    write_jsonl(cache, (r.to_json() for r in records))
    model_path = tiny_checkpoints["qwen2_vl"]
    return {"records": records, "cache": cache, "model": model_path, "tmp": tmp_path}


def run_uninterrupted(job, output):
    model, processor = load_vlm(job["model"], device="cpu")
    key = fingerprint(job["model"], job["cache"], SETTINGS)
    return run_inference(model, processor, job["records"], output, SETTINGS, key)


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import vlmflow.vqa.inference as inference
    from vlmflow.core.io import read_jsonl
    from vlmflow.core.models import load_vlm
    from vlmflow.core.records import Record

    model_path, cache, output, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    real_generate, calls = inference.generate_batch, [0]

    def generate_then_die(*args, **kwargs):
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # a preempted node: no cleanup, no exception
        return real_generate(*args, **kwargs)

    inference.generate_batch = generate_then_die
    settings = inference.GenerationSettings(batch_size=2, max_new_tokens=4, chunk_batches=1)
    records = [Record.from_json(r) for r in read_jsonl(cache)]
    model, processor = load_vlm(model_path, device="cpu")
    key = inference.fingerprint(model_path, cache, settings)
    inference.run_inference(model, processor, records, output, settings, key)
    """
)


def test_killed_inference_resumes_to_the_uninterrupted_file(job):
    reference = job["tmp"] / "reference" / "predictions.jsonl"
    assert run_uninterrupted(job, reference) == 0
    rows = [json.loads(line) for line in reference.read_text().splitlines()]
    assert [r["question_id"] for r in rows] == [r.question_id for r in job["records"]]
    assert all({"question_id", "prediction", "raw_output"} <= set(r) for r in rows)

    output = job["tmp"] / "resumed" / "predictions.jsonl"
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, str(job["model"]), str(job["cache"]), str(output), "4"], capture_output=True
    )
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert not output.exists(), "a killed job must not leave a complete-looking output"
    partial = output.with_name(output.name + ".partial")
    assert len(partial.read_text().splitlines()) == 6  # three batches of two, one chunk each
    with open(partial, "a") as handle:  # a line torn by the kill
        handle.write('{"question_id": "6", "predic')

    assert run_uninterrupted(job, output) == 6
    assert output.read_bytes() == reference.read_bytes()
    assert not partial.exists()


def test_changed_settings_start_over(job):
    output = job["tmp"] / "out" / "predictions.jsonl"
    partial = output.with_name(output.name + ".partial")
    output.parent.mkdir(parents=True)
    stale_key = fingerprint(job["model"], job["cache"], GenerationSettings(batch_size=2, max_new_tokens=9))
    partial.write_text('{"question_id": "0", "prediction": "stale", "raw_output": "stale"}\n' * 2)
    (output.parent / "predictions.jsonl.partial.json").write_text(json.dumps(stale_key))
    assert run_uninterrupted(job, output) == 0
    assert "stale" not in output.read_text()
