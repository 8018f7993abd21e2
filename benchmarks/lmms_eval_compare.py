"""vlmflow against lmms-eval itself: the same checkpoint answering the same questions, throughput and
answers side by side in one run.

The questions vlmflow answers (the first N records of its cache) are exported to a JSON-lines file
and read by a local lmms-eval task (a YAML written beside it, `dataset_path: json` with
`data_files`, found through `TaskManager(include_path=...)`), which its Qwen2-VL model class
(`qwen2_vl`) answers through `lmms_eval.evaluator.simple_evaluate` (`predict_only`, greedy, the same
`max_new_tokens`, stop at the end-of-turn token). vlmflow's `run_inference` answers the same
records. A timed run starts with loading the checkpoint, since lmms-eval frees its model at the end
of every evaluation (lmms-eval: model, task and dataset set-up, requests, generation,
post-processing; vlmflow: model, generation, post-processing, durable writes); runs are repeated
interleaved after a warm-up of each, medians reported. lmms-eval runs at batch 1 (its default for
this class) and at vlmflow's batch size.

Made equal: the prompt text (the task's post-prompt is vlmflow's prompt after "{question}"; the
chat each side renders, lmms-eval's default system turn included, is compared text by text) and
decoding. What still differs, and is reported: lmms-eval sends each image through a JPEG (quality
85) data URL before its processor sees it, where vlmflow hands the decoded file over as it is. So
the answers are compared twice: against vlmflow on the original images (what each tool does), and
against vlmflow fed the very JPEG bytes lmms-eval makes (what is left is the engines' own doing:
batching, padding side, the order lmms-eval sorts requests in). lmms-eval strips its answers, so
vlmflow's raw outputs are compared stripped.

lmms-eval 0.7.3 in the `bench` extra keeps vlmflow's transformers (5.24) and runs with it, given
two packages its metadata misses, which the extra adds: `decord` (its `qwen2_vl` module imports it
at the top; x86-64 wheels only, whose tags `pip check` misreads) and filelock below 4
(`simple_evaluate` patches `filelock._api`, which filelock 4 removed). Run offline: HF_HUB_OFFLINE
and HF_DATASETS_OFFLINE are set here. The task's functions are this module's
(`!function lmms_eval_compare.doc_to_text`), which lmms-eval imports by name from the script's
folder.

    pip install -e '.[bench]'
    python benchmarks/lmms_eval_compare.py --model resources/zoo/qwen2vl_guide/samples-96000 \
        --cache results/cache/vqav2_val.jsonl --threads 2
"""

from __future__ import annotations

import argparse
import base64
import importlib.metadata
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

TRAINED = Path("resources/zoo/qwen2vl_guide/samples-96000")
TASK = "vlmflow_vqa"


def doc_to_visual(doc: dict[str, Any]) -> list[Any]:
    """The task's image: the file the record names, decoded to RGB (as vlmflow loads it)."""
    from PIL import Image

    with Image.open(doc["image"]) as image:
        return [image.convert("RGB")]


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, str]) -> str:
    return lmms_eval_specific_kwargs["pre_prompt"] + doc["question"] + lmms_eval_specific_kwargs["post_prompt"]


def write_task(folder: Path, questions: Path, post_prompt: str, max_new_tokens: int, stop: str) -> None:
    """A local lmms-eval task over `questions` (JSON lines): its YAML, in `folder`."""
    data = {"test": str(questions.resolve())}
    lines = [
        f"task: {TASK}",
        "dataset_path: json",
        f"dataset_kwargs: {json.dumps({'data_files': data, 'cache_dir': str((folder / 'hf').resolve())})}",
        "test_split: test",
        "output_type: generate_until",
        "doc_to_visual: !function lmms_eval_compare.doc_to_visual",
        "doc_to_text: !function lmms_eval_compare.doc_to_text",
        "doc_to_target: question_id",
        "generation_kwargs:",
        f"  max_new_tokens: {max_new_tokens}",
        "  temperature: 0",
        "  do_sample: false",
        "  num_beams: 1",
        f"  until: [{json.dumps(stop)}]",
        "metric_list:",
        "  - metric: exact_match",
        "    aggregation: mean",
        "    higher_is_better: true",
        "lmms_eval_specific_kwargs:",
        "  default:",
        '    pre_prompt: ""',
        f"    post_prompt: {json.dumps(post_prompt)}",
    ]
    (folder / f"{TASK}.yaml").write_text("\n".join(lines) + "\n")


class Recorder:
    """Stands in for lmms-eval's processor, keeping every text it is asked to encode."""

    def __init__(self, processor: Any) -> None:
        self.processor, self.texts = processor, []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.texts += kwargs["text"]
        return self.processor(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.processor, name)


def timed(fn: Callable[[], Any], cuda: bool) -> tuple[float, Any]:
    import torch

    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    value = fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, value


def differing(ids: Sequence[str], ours: dict[str, str], theirs: dict[str, str]) -> list[str]:
    return [i for i in ids if ours[i].strip() != theirs[i]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(TRAINED))
    parser.add_argument("--cache", default="results/cache/vqav2_val.jsonl")
    parser.add_argument("--questions", type=int, default=128, help="the first N records of the cache")
    parser.add_argument("--batch-size", type=int, default=8, help="vlmflow's, and lmms-eval's second run")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda when visible")
    parser.add_argument("--out", default="benchmarks/results/lmms_eval_compare.json")
    args = parser.parse_args()

    import torch
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.models import get_model
    from lmms_eval.tasks import TaskManager

    from vlmflow.core.io import read_jsonl, write_json, write_jsonl
    from vlmflow.core.models import load_vlm
    from vlmflow.core.prompts import load_image, render_prompt
    from vlmflow.core.records import Record, read_records
    from vlmflow.core.settings import GenerationSettings
    from vlmflow.vqa.inference import fingerprint, run_inference

    torch.set_num_threads(args.threads)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    records = read_records(args.cache)[: args.questions]
    ids = [r.question_id for r in records]
    settings = GenerationSettings(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
    if not settings.prompt.startswith("{question}"):
        raise SystemExit(f"vlmflow's prompt {settings.prompt!r} does not start with the question")
    cuda = args.device == "cuda"
    batch_sizes = sorted({1, args.batch_size})
    seen: dict[str, Any] = {"lmms_eval_prompts": set()}  # what each side was given, for the report

    with tempfile.TemporaryDirectory(prefix="lmms_eval_compare-") as tmp:
        root = Path(tmp)

        def vlmflow(recs: Sequence[Record], name: str) -> dict[str, str]:
            """Load the checkpoint, answer `recs`: the raw outputs by question id."""
            model, processor = load_vlm(args.model, device=args.device)
            output = root / name / "predictions.jsonl"
            output.unlink(missing_ok=True)
            run_inference(model, processor, recs, output, settings, fingerprint(args.model, args.cache, settings))
            seen.update(processor=processor, vlmflow_dtype=str(model.dtype), device=model.device)
            return {row["question_id"]: row["raw_output"] for row in read_jsonl(output)}

        def lmms_eval(batch_size: int) -> dict[str, str]:
            """Load the checkpoint into lmms-eval's `qwen2_vl` and evaluate the task (which frees the
            model at its end): the answers by question id."""
            lm = get_model("qwen2_vl").create_from_arg_string(
                f"pretrained={args.model},device={args.device},device_map={args.device},batch_size={batch_size}"
            )
            lm.processor = Recorder(lm.processor)
            seen.update(lm=lm, lmms_eval_dtype=str(lm.model.dtype))
            results = simple_evaluate(model=lm, tasks=[TASK], task_manager=tasks, predict_only=True,
                                      log_samples=True, verbosity="WARNING", bootstrap_iters=0)  # fmt: skip
            seen["lmms_eval_prompts"].update(lm.processor.texts)
            return {str(s["doc"]["question_id"]): s["filtered_resps"][0] for s in results["samples"][TASK]}

        vlmflow(records[: args.batch_size], "warm-up")  # lazy initialisation (kernels, tokenizer caches)
        questions = root / "questions.jsonl"
        write_jsonl(questions, [{"question_id": r.question_id, "question": r.question,
                                 "image": str(Path(r.image).resolve())} for r in records])  # fmt: skip
        write_task(root, questions, settings.prompt.removeprefix("{question}"), args.max_new_tokens,
                   seen["processor"].tokenizer.eos_token)  # fmt: skip
        tasks = TaskManager("WARNING", include_path=str(root), include_defaults=False)
        lmms_eval(batch_sizes[-1])  # its warm-up, which also writes the datasets cache of the task
        runs: dict[str, list[float]] = {"vlmflow": [], **{f"lmms_eval_{b}": [] for b in batch_sizes}}
        answers: dict[str, dict[str, str]] = {}
        for _ in range(args.repeats):  # interleaved, so drift in machine load hits every side alike
            seconds, answers["vlmflow"] = timed(partial(vlmflow, records, "vlmflow"), cuda)
            runs["vlmflow"].append(len(records) / seconds)
            for b in batch_sizes:
                seconds, answers[f"lmms_eval_{b}"] = timed(partial(lmms_eval, b), cuda)
                runs[f"lmms_eval_{b}"].append(len(records) / seconds)
        # The pixels lmms-eval's model sees: the JPEG bytes of its own data URL of each image, as files.
        (root / "jpeg").mkdir()
        same_pixels = []
        for r in records:
            url = seen["lm"]._encode_image_data_url(load_image(r))
            path = root / "jpeg" / f"{r.question_id}.jpg"
            path.write_bytes(base64.b64decode(url.split("base64,", 1)[1]))
            same_pixels.append(replace(r, image=str(path), image_file=None))
        answers_same_pixels = vlmflow(same_pixels, "same-pixels")

    ours = {render_prompt(seen["processor"], r.question, settings) for r in records}
    prompts_identical = seen["lmms_eval_prompts"] == ours
    speed = statistics.median(runs["vlmflow"])
    rows = []
    for b in batch_sizes:
        theirs = answers[f"lmms_eval_{b}"]
        differ = differing(ids, answers["vlmflow"], theirs)
        examples = [{"question_id": i, "vlmflow": answers["vlmflow"][i], "lmms_eval": theirs[i]} for i in differ[:3]]
        lmms_speed = statistics.median(runs[f"lmms_eval_{b}"])
        rows.append({
            "batch_size": b,
            "questions_per_s": lmms_speed,
            "runs": runs[f"lmms_eval_{b}"],
            "ratio_vlmflow_over_lmms_eval": speed / lmms_speed,
            "differing": len(differ),
            "differing_same_pixels": len(differing(ids, answers_same_pixels, theirs)),
            "examples": examples,
        })  # fmt: skip
    device = seen["device"]
    padding = (seen["processor"].tokenizer.padding_side, seen["lm"].processor.tokenizer.padding_side)
    differences = [
        "lmms-eval re-encodes every image as JPEG (quality 85) before its processor sees it",
        "lmms-eval sorts requests by prompt length before batching; vlmflow batches in dataset order",
        "lmms-eval strips its answers; vlmflow's raw outputs are compared stripped",
    ]
    if padding[1] != "left":
        differences.append(f"lmms-eval pads a batch on the {padding[1]} (its tokenizer's default), so at batch > 1 "
                           "shorter prompts generate after padding; vlmflow pads on the left")  # fmt: skip
    result = {
        "model": args.model,
        "device": f"cuda ({torch.cuda.get_device_name(device)})" if cuda else f"cpu ({args.threads} threads)",
        "lmms_eval": importlib.metadata.version("lmms-eval"),
        "lmms_eval_model": "qwen2_vl",
        "dtypes": {"vlmflow": seen["vlmflow_dtype"], "lmms_eval": seen["lmms_eval_dtype"]},
        "padding_side": {"vlmflow": padding[0], "lmms_eval": padding[1]},
        "questions": len(records),
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "prompts_identical": prompts_identical,
        "differences": differences,
        "vlmflow": {"batch_size": args.batch_size, "questions_per_s": speed, "runs": runs["vlmflow"]},
        "lmms_eval_runs": rows,
    }
    write_json(args.out, result)
    print(f"\n{len(records)} questions, {args.max_new_tokens} new tokens, {result['device']}, median of {args.repeats}; "
          f"lmms-eval {result['lmms_eval']} `qwen2_vl`; prompts identical: {prompts_identical}")  # fmt: skip
    print(f"vlmflow run_inference, batch {args.batch_size}: {speed:.1f} q/s")
    print(
        "| lmms-eval batch | q/s | vlmflow / lmms-eval | answers differing | same pixels |\n|---:|---:|---:|---:|---:|"
    )
    for row in rows:
        print(f"| {row['batch_size']} | {row['questions_per_s']:.1f} | {row['ratio_vlmflow_over_lmms_eval']:.2f}x | "
              f"{row['differing']} | {row['differing_same_pixels']} |")  # fmt: skip
        for e in row["examples"]:
            print(f"    {e['question_id']}: vlmflow {e['vlmflow']!r}, lmms-eval {e['lmms_eval']!r}")
    print(json.dumps(result, indent=2))
    if not prompts_identical:
        raise SystemExit("lmms-eval was given other prompts than vlmflow renders")


if __name__ == "__main__":
    main()
