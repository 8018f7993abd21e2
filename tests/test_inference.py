"""Batched inference: answer parsing; resume after a real kill gives the uninterrupted file, but
only for the same model contents; one writer per partial file; out of memory halves the batch."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import make_records
from transformers import AutoModelForImageTextToText

from vlmflow.core.answer_modes import extract_answer
from vlmflow.core.gpu_memory import INJECT_OOM_ABOVE
from vlmflow.core.io import write_jsonl
from vlmflow.core.models import load_vlm
from vlmflow.core.resumable import PartialInUse, ResumableJsonl
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
    (output.parent / "predictions.jsonl.partial.json").write_text(json.dumps({"fingerprint": stale_key, "unit": 2}))
    assert run_uninterrupted(job, output) == 0
    assert "stale" not in output.read_text()


def kill_after(job, model, output, batches: int) -> None:
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, str(model), str(job["cache"]), str(output), str(batches)], capture_output=True
    )
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]


def test_a_model_replaced_at_the_same_path_starts_over(job):
    """Issue 19 (2): kill a job, rebuild the model at its path, rerun: the rows of the old model
    must not be kept (the resume key names the model's files, not its path)."""
    model_path = job["tmp"] / "model"
    shutil.copytree(job["model"], model_path)
    output = job["tmp"] / "out" / "predictions.jsonl"
    kill_after(job, model_path, output, 4)
    assert len(output.with_name(output.name + ".partial").read_text().splitlines()) == 6

    model = AutoModelForImageTextToText.from_pretrained(model_path)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.5)
    model.save_pretrained(model_path)  # another model at the same path
    new = dict(job, model=model_path)
    assert run_uninterrupted(new, output) == 0, "rows of the old model must not be reused"
    reference = job["tmp"] / "reference" / "predictions.jsonl"
    run_uninterrupted(new, reference)
    assert output.read_bytes() == reference.read_bytes()


SECOND_WRITER = textwrap.dedent(
    """
    import sys
    from vlmflow.core.resumable import PartialInUse, ResumableJsonl
    try:
        ResumableJsonl(sys.argv[1], {"a": 1})
    except PartialInUse as error:
        print(error)
        sys.exit(3)
    """
)


def test_a_second_writer_fails_naming_the_holder(tmp_path):
    """Issue 19 (3): snakemake killed, its job still running, `--unlock`, rerun: the second job
    must not append to the same partial file."""
    output = tmp_path / "predictions.jsonl"
    writer = ResumableJsonl(output, {"a": 1}, expected_ids=["q1"])
    second = subprocess.run([sys.executable, "-c", SECOND_WRITER, str(output)], capture_output=True, text=True)
    assert second.returncode == 3, second.stderr[-2000:]
    assert f"pid {os.getpid()}" in second.stdout and "another process" in second.stdout
    writer.append([{"question_id": "q1"}])
    writer.finish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.jsonl"], "no resume state or lock left"
    again = subprocess.run([sys.executable, "-c", SECOND_WRITER, str(output)], capture_output=True, text=True)
    assert again.returncode == 0, "the lock is released when the writer finishes"
    first = ResumableJsonl(tmp_path / "other.jsonl", {})
    with pytest.raises(PartialInUse):  # in one process too
        ResumableJsonl(tmp_path / "other.jsonl", {})
    first.close()


def test_rows_that_do_not_answer_the_dataset_are_not_published(tmp_path):
    output = tmp_path / "predictions.jsonl"
    writer = ResumableJsonl(output, {"a": 1}, expected_ids=["q1", "q2", "q3"])
    writer.append([{"question_id": "q1"}, {"question_id": "q3"}])
    with pytest.raises(RuntimeError, match=r"2 rows for 3 questions \(missing \['q2'\]"):
        writer.finish()
    assert not output.exists()


def test_out_of_memory_halves_the_batch_and_goes_on(job, monkeypatch):
    """Batches above 1 'do not fit': the job answers at batch 1 from the first batch on, so its
    file equals a run configured at batch 1; a resumed job goes on at the halved size."""
    model, processor = load_vlm(job["model"], device="cpu")
    small = GenerationSettings(batch_size=1, max_new_tokens=4, chunk_batches=2)
    reference = job["tmp"] / "reference" / "predictions.jsonl"
    run_inference(model, processor, job["records"], reference, small, fingerprint(job["model"], job["cache"], small))

    monkeypatch.setenv(INJECT_OOM_ABOVE, "1")
    output = job["tmp"] / "oom" / "predictions.jsonl"
    key = fingerprint(job["model"], job["cache"], SETTINGS)
    messages = []
    log = logging.getLogger("test-oom")
    monkeypatch.setattr(log, "warning", lambda message, *args: messages.append(message % args))
    assert run_inference(model, processor, job["records"], output, SETTINGS, key, log) == 0
    assert output.read_bytes() == reference.read_bytes()
    assert messages == ["out of memory: batch size halved to 1"]
