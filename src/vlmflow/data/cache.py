"""Cache one configured dataset to JSON lines: read its upstream format, select, write atomically.

A dataset spec is the dict under `datasets.<name>` in config.yaml:
  vqav2:      {"format": "vqav2", "questions", "annotations", "images", ...options}
  textvqa:    {"format": "textvqa", "json", "images", ...options}
  kvasir:     {"format": "kvasir", "parquet", ...options}
  swap_pairs: {"format": "swap_pairs", "tsv", ...options}
  jsonl:       {"format": "jsonl", "jsonl", "columns", ...options}
  csv:         {"format": "csv", "csv", "columns", ...options}
  parquet:     {"format": "parquet", "parquet" (a file, folder or glob), "columns", ...options}
  hf_datasets: {"format": "hf_datasets", "path" (a save_to_disk folder), "columns", ...options}
options: "limit", "subsample", "seed", "case_list" (each may be absent or null); "columns" (field ->
column name, `vlmflow.data.columns`) may be absent.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from vlmflow.core.errors import InputError
from vlmflow.core.io import write_jsonl
from vlmflow.core.records import Record
from vlmflow.data.common import stamp_images
from vlmflow.data.flat import read_csv_questions, read_jsonl_questions
from vlmflow.data.hub import read_hf_dataset, read_parquet_questions
from vlmflow.data.kvasir import read_kvasir
from vlmflow.data.question_types import QuestionRule, enrich
from vlmflow.data.select import load_case_ids, select
from vlmflow.data.swap_pairs import read_swap_pairs
from vlmflow.data.textvqa import read_textvqa
from vlmflow.data.vqav2 import read_vqav2

Spec = dict[str, Any]
Reader = Callable[..., list[Record]]


def _vqav2(spec: Spec, *, dataset: str, images_out_dir: Path | None, **images) -> list[Record]:
    return read_vqav2(Path(spec["questions"]), Path(spec["annotations"]), Path(spec["images"]), dataset, **images)


def _textvqa(spec: Spec, *, dataset: str, images_out_dir: Path | None, **images) -> list[Record]:
    return read_textvqa(Path(spec["json"]), Path(spec["images"]), dataset, **images)


def _kvasir(spec: Spec, *, dataset: str, images_out_dir: Path | None, **images) -> list[Record]:
    return read_kvasir(Path(spec["parquet"]), images_out_dir, dataset, **images)


def _swap_pairs(spec: Spec, *, dataset: str, images_out_dir: Path | None, **images) -> list[Record]:
    return read_swap_pairs(Path(spec["tsv"]), images_out_dir, dataset, **images)


def _jsonl(spec: Spec, *, dataset: str, images_out_dir: Path | None, **images) -> list[Record]:
    return read_jsonl_questions(Path(spec["jsonl"]), dataset, spec.get("columns"), **images)


def _csv(spec: Spec, *, dataset: str, images_out_dir: Path | None, **images) -> list[Record]:
    return read_csv_questions(Path(spec["csv"]), dataset, spec.get("columns"), **images)


def _parquet(spec: Spec, *, dataset: str, images_out_dir: Path | None, **images) -> list[Record]:
    return read_parquet_questions(spec["parquet"], images_out_dir, dataset, spec.get("columns"), **images)


def _hf_datasets(spec: Spec, *, dataset: str, images_out_dir: Path | None, **images) -> list[Record]:
    return read_hf_dataset(Path(spec["path"]), images_out_dir, dataset, spec.get("columns"), **images)


# format name -> reader(spec, *, dataset, images_out_dir, check_images=True, only=None) -> records;
# `only` (question ids) limits image checks and extraction to those records.
# VQAv2, TextVQA, JSONL and CSV records point at the images in place; the others extract to
# images_out_dir.
FORMAT_READERS: dict[str, Reader] = {
    "vqav2": _vqav2,
    "textvqa": _textvqa,
    "kvasir": _kvasir,
    "swap_pairs": _swap_pairs,
    "jsonl": _jsonl,
    "csv": _csv,
    "parquet": _parquet,
    "hf_datasets": _hf_datasets,
}


def read_dataset(
    name: str,
    spec: Spec,
    images_out_dir: Path | None,
    check_images: bool = True,
    only: Collection[str] | None = None,
) -> list[Record]:
    fmt = spec.get("format")
    if fmt not in FORMAT_READERS:
        raise ValueError(f"dataset '{name}': unknown format {fmt!r} (expected one of {', '.join(FORMAT_READERS)})")
    return FORMAT_READERS[fmt](spec, dataset=name, images_out_dir=images_out_dir, check_images=check_images, only=only)


def cache_dataset(
    name: str,
    spec: Spec,
    out_jsonl: Path,
    images_out_dir: Path | None,
    other_specs: dict[str, Spec],
) -> int:
    """Read dataset `name`, apply its case list / subsample / limit, write `out_jsonl`; returns the
    number of records. With `question_types: true` (or a list of rules, tried before the built-in
    ones) the records get candidates per inferred question type (`vlmflow.data.question_types.enrich`).

    The text of every record is validated; images are checked (decoded in full) and extracted only
    for the records kept, so `limit: 50` on a 6,500-image parquet touches 50 questions' images.
    Every record carries its image's size, modification time and hash (`Record.image_file`), so
    `read_records` can name an image replaced after caching.

    On any input error nothing is written: `out_jsonl` and `images_out_dir` keep what they held
    (extracted images go to a temporary folder that replaces `images_out_dir` only once all of
    them decoded; the cache file is written last, atomically).
    """
    records = read_dataset(name, spec, None, check_images=False)
    case_ids = None
    if spec.get("case_list"):
        case_path = Path(spec["case_list"])
        case_ids = load_case_ids(case_path)
        _check_case_ids(case_path, case_ids, name, records, other_specs)
    chosen = select(
        records,
        limit=spec.get("limit"),
        subsample=spec.get("subsample"),
        seed=spec.get("seed") or 0,
        case_ids=case_ids,
    )
    keep = [r.question_id for r in chosen]
    with_images = {r.question_id: r for r in read_dataset(name, spec, images_out_dir, only=set(keep))}
    kept = stamp_images([with_images[qid] for qid in keep])
    if question_types := spec.get("question_types"):
        rules = (
            QuestionRule.from_config(question_types, f"datasets.{name}.question_types")
            if question_types is not True
            else ()
        )
        kept = enrich(kept, rules=rules)
    return write_jsonl(out_jsonl, (r.to_json() for r in kept))


def _check_case_ids(
    path: Path, case_ids: list[str], name: str, records: list[Record], other_specs: dict[str, Spec]
) -> None:
    """Every case id must be in the dataset; when the missing ones belong to another configured
    dataset, say which (a VQAv2 case list once sat under textvqa/ and silently matched nothing)."""
    present = {r.question_id for r in records}
    missing = [i for i in dict.fromkeys(case_ids) if i not in present]
    if not missing:
        return
    n_unique = len(set(case_ids))
    examples = ", ".join(repr(i) for i in missing[:3])
    problem = f"{len(missing)} of {n_unique} ids are not in dataset '{name}' (e.g. {examples})"
    match = _best_match(set(missing), name, other_specs)
    if match is not None:
        other, hits = match
        which = "they" if hits == len(missing) else f"{hits} of them"
        problem += f"; {which} match dataset '{other}' — is this a {other_specs[other]['format']} case list?"
    raise InputError(path, problem, field="question_id")


def _best_match(missing: set[str], name: str, other_specs: dict[str, Spec]) -> tuple[str, int] | None:
    """The other dataset holding most of the missing ids; unreadable ones are skipped, since
    this only improves an error message."""
    best = None
    for other, spec in other_specs.items():
        if other == name:
            continue
        try:
            ids = {r.question_id for r in read_dataset(other, spec, None, check_images=False)}
        except (InputError, OSError, KeyError, ValueError):
            continue
        hits = len(missing & ids)
        if hits and (best is None or hits > best[1]):
            best = (other, hits)
    return best
