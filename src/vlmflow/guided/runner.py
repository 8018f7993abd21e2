"""Guided visual-token pruning as a resumable experiment: SGL and its baselines at equal retention.

One job per (experiment, method). Per batch: the pixels go through the vision tower once when the
guide and decode models share one (the same tower config and image processor, as InternVL2-2B and
-8B do; each model's own projector then maps the features), else each model runs its own tower;
for `guided`, the guide answers once (importance, confidence, consistency, an optional rationale);
then the decode model answers once per keep ratio, ranking visual tokens by the guide's importance,
by its own attention (`fastv`) or at random (`random`). Rows are flushed chunk by chunk, so a
killed job resumes after its last complete chunk.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, ProcessorMixin

from vlmflow.core.answer_modes import (
    COT_PROMPT,
    RATIONALE_PROMPT,
    WITH_RATIONALE_PROMPT,
    extract_answer,
    format_followed,
)
from vlmflow.core.io import folder_signature
from vlmflow.core.models import load_vlm
from vlmflow.core.prompts import encode_batch, load_image
from vlmflow.core.records import Record
from vlmflow.core.resumable import ResumableJsonl, answer_in_batches
from vlmflow.core.settings import GenerationSettings, PruningSettings
from vlmflow.guided.attention_stats import write_importance
from vlmflow.guided.early_exit import exit_score
from vlmflow.guided.importance import (
    ImportanceAccumulator,
    confidence,
    random_scores,
    sequence_probability,
)
from vlmflow.guided.pruning import (
    LanguageInputs,
    generate,
    language_model,
    prepare_inputs,
    prune_layer_index,
)
from vlmflow.guided.rows import keep_label
from vlmflow.guided.shared_vision import SharedVision, shared_vision_reason

METHODS = ("guided", "fastv", "random")
TEXT_MODES = ("none", "short_rationale")
REASONING_MODES = ("none", "short_cot")
SHARED_VISION = ("auto", "always", "never")


def check_pruning(settings: PruningSettings) -> None:
    for value, allowed, name in (
        (settings.method, METHODS, "method"),
        (settings.guide_text_mode, TEXT_MODES, "guide_text_mode"),
        (settings.guide_reasoning_mode, REASONING_MODES, "guide_reasoning_mode"),
        (settings.shared_vision, SHARED_VISION, "shared_vision"),
    ):
        if value not in allowed:
            raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")
    bad = [r for r in settings.keep_ratios if not 0.0 < r <= 1.0]
    if bad:
        raise ValueError(f"keep_ratios {bad}: each must be in (0, 1]")
    if settings.method != "guided" and (settings.guide_text_mode != "none" or settings.guide_reasoning_mode != "none"):
        raise ValueError(f"guide modes need method 'guided', not {settings.method!r}")


@dataclass
class Pair:
    """The decode model, and for `guided` the guide, each with its processor."""

    decode: PreTrainedModel
    decode_processor: ProcessorMixin
    guide: PreTrainedModel | None = None
    guide_processor: ProcessorMixin | None = None
    shared_vision: bool = False


def load_pair(
    decode_path: str | Path,
    guide_path: str | Path | None,
    settings: PruningSettings,
    device: str = "auto",
    trust_remote_code: tuple[bool, bool] = (False, False),
    device_map: str | None = None,
    max_memory: Mapping[str, str | int] | None = None,
    offload_folder: str | Path | None = None,
) -> Pair:
    """The guide needs its attention weights (eager attention); so does the decode model for FastV.

    A `device_map` (with `max_memory`, `offload_folder`) spreads the decode model over the job's
    GPUs; the guide, loaded after it, goes whole onto the first GPU (leave it room in max_memory)."""
    decode, decode_processor = load_vlm(
        decode_path,
        device=device,
        device_map=device_map,
        max_memory=max_memory,
        offload_folder=offload_folder,
        trust_remote_code=trust_remote_code[0],
        attn_implementation="eager" if settings.method == "fastv" else None,
    )
    pair = Pair(decode, decode_processor)
    if settings.method == "guided":
        if guide_path is None:
            raise ValueError("method 'guided' needs a guide model")
        pair.guide, pair.guide_processor = load_vlm(
            guide_path, device=device, trust_remote_code=trust_remote_code[1], attn_implementation="eager"
        )
        reason = shared_vision_reason(pair.guide, pair.guide_processor, decode, decode_processor)
        if settings.shared_vision == "always" and reason:
            raise ValueError(f"shared_vision: always, but {guide_path} and {decode_path} cannot share one: {reason}")
        pair.shared_vision = settings.shared_vision != "never" and reason is None
    return pair


def _special_ids(model: PreTrainedModel, processor: ProcessorMixin) -> tuple[list[int], int]:
    eos = model.generation_config.eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    tokenizer = processor.tokenizer
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        eos.append(tokenizer.eos_token_id)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    return eos, pad


def _decode_text(processor: ProcessorMixin, tokens: torch.Tensor) -> list[str]:
    return processor.batch_decode(tokens, skip_special_tokens=True)


def check_grids(records: Sequence[Record], guide: LanguageInputs, decode: LanguageInputs) -> None:
    """The guide's importance ranks the decode model's visual tokens one to one."""
    for record, g, d in zip(records, guide.visual_counts, decode.visual_counts):
        if g != d:
            raise ValueError(
                f"question {record.question_id} ({record.image}): the guide has {g} visual tokens but the decode model "
                f"{d}; their visual grids do not correspond (pick models whose image processors give the same grid)"
            )


class PrunedRunner:
    """Answers batches with one pruning method at every configured keep ratio."""

    def __init__(self, pair: Pair, generation: GenerationSettings, pruning: PruningSettings) -> None:
        check_pruning(pruning)
        if generation.mode != "normal" or generation.decoding != "free":
            raise ValueError(
                "pruned decoding uses answer mode 'normal' and free decoding; guide modes are set by "
                "guide_text_mode / guide_reasoning_mode"
            )
        self.pair, self.generation, self.pruning = pair, generation, pruning

    def _guide(self, records, images, shared) -> tuple[LanguageInputs, list[dict[str, Any]], list[torch.Tensor]]:
        """The guide's greedy answer with its attention summed onto the visual tokens."""
        model, processor, p, g = self.pair.guide, self.pair.guide_processor, self.pruning, self.generation
        cot = p.guide_reasoning_mode == "short_cot"
        template = COT_PROMPT if cot else g.prompt
        inputs = encode_batch(
            model, processor, records, g, [template.format(question=r.question) for r in records], images
        )
        language = prepare_inputs(model, inputs, shared)
        num_layers = len(language_model(model).layers)
        importance = ImportanceAccumulator(language, num_layers, p.guide_layers, p.guide_rows)
        eos, pad = _special_ids(model, processor)
        budget = g.reasoning_tokens if cot else g.max_new_tokens
        answer = generate(
            model, language, max_new_tokens=budget, eos_token_ids=eos, pad_token_id=pad, observe=importance
        )
        scores = importance.scores()
        recheck = generate(
            model,
            language,
            max_new_tokens=budget,
            eos_token_ids=eos,
            pad_token_id=pad,
            keep_ratio=p.consistency_token_ratio,
            prune_at=0,
            scores=scores,
            forced=answer.tokens,
            forced_lengths=answer.lengths,
        )
        confident = confidence(answer.logprobs, answer.lengths)
        consistent = sequence_probability(recheck.logprobs)
        raws = _decode_text(processor, answer.tokens)
        rows = [
            {
                "prediction": extract_answer(raw),
                "raw_output": raw,
                "confidence": c,
                "consistency": s,
                "exit_score": exit_score(c, s),
            }
            for raw, c, s in zip(raws, confident, consistent)
        ]
        if p.guide_text_mode == "short_rationale":
            asks = [RATIONALE_PROMPT.format(question=r.question) for r in records]
            why = prepare_inputs(model, encode_batch(model, processor, records, g, asks, images), shared)
            notes = generate(model, why, max_new_tokens=g.reasoning_tokens, eos_token_ids=eos, pad_token_id=pad)
            for row, text in zip(rows, _decode_text(processor, notes.tokens)):
                row["rationale"] = " ".join(text.split())
        return language, rows, scores

    def answer(self, records: Sequence[Record]) -> list[dict[str, Any]]:
        """One row per record: the decode model's answer at each keep ratio (and the guide's view)."""
        p, g, pair = self.pruning, self.generation, self.pair
        images = [load_image(r) for r in records]
        asks = [g.prompt.format(question=r.question) for r in records]
        shared = SharedVision() if pair.shared_vision else None
        extras: list[dict[str, Any]] = [{} for _ in records]
        scores = None
        guide_inputs = None
        if p.method == "guided":
            guide_inputs, guide_rows, scores = self._guide(records, images, shared)
            for extra, row, score in zip(extras, guide_rows, scores):
                rationale = row.pop("rationale", None)
                extra.update(guide=row, importance=score.tolist())
                if rationale is not None:
                    extra["rationale"] = rationale
            if p.guide_text_mode == "short_rationale":
                asks = [
                    WITH_RATIONALE_PROMPT.replace("{rationale}", e["rationale"]).replace("{question}", r.question)
                    for r, e in zip(records, extras)
                ]
        inputs = prepare_inputs(
            pair.decode, encode_batch(pair.decode, pair.decode_processor, records, g, asks, images), shared
        )
        if guide_inputs is not None:
            check_grids(records, guide_inputs, inputs)
        if p.method == "random":
            scores = random_scores([r.question_id for r in records], inputs.visual_counts, p.seed)
        eos, pad = _special_ids(pair.decode, pair.decode_processor)
        depth = len(language_model(pair.decode).layers)
        prune_at = prune_layer_index(depth, p.prune_layer)
        by_keep: dict[str, list[dict[str, Any]]] = {}
        for ratio in p.keep_ratios:
            out = generate(
                pair.decode,
                inputs,
                max_new_tokens=g.max_new_tokens,
                eos_token_ids=eos,
                pad_token_id=pad,
                keep_ratio=ratio,
                prune_at=prune_at,
                scores=scores,
                fastv=p.method == "fastv",
            )
            kept = [len(k) for k in out.kept] if out.kept is not None else inputs.visual_counts
            by_keep[keep_label(ratio)] = [
                {
                    "prediction": extract_answer(raw),
                    "raw_output": raw,
                    "format_ok": format_followed("normal", raw),
                    "visual_tokens": n,
                }
                for raw, n in zip(_decode_text(pair.decode_processor, out.tokens), kept)
            ]
        return [
            {
                "question_id": r.question_id,
                "question": r.question,
                "visual_tokens": n,
                "keep": {label: rows[i] for label, rows in by_keep.items()},
                **extras[i],
            }
            for i, (r, n) in enumerate(zip(records, inputs.visual_counts))
        ]


def pruning_fingerprint(
    decode_path, guide_path, cache_sha256: str, generation: GenerationSettings, pruning: PruningSettings
) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one: both models' files, the data, the settings."""
    return {
        "decode": folder_signature(decode_path),
        "guide": folder_signature(guide_path) if guide_path else None,
        "data_sha256": cache_sha256,
        "generation": asdict(generation),
        "pruning": asdict(pruning),
    }


def run_pruned(
    runner: PrunedRunner,
    records: Sequence[Record],
    output: str | Path,
    resume_key: dict[str, Any],
    importance_path: str | Path | None = None,
    log: logging.Logger | None = None,
) -> int:
    """Write one row per record to `output` (and, for `guided`, the guide's importance per question
    to `importance_path` as parquet), resuming a partial run; a batch that runs out of device
    memory is halved. Returns the rows already done."""
    g = runner.generation
    ids = [r.question_id for r in records]
    writer = ResumableJsonl(output, resume_key, unit=g.batch_size, expected_ids=ids)
    done = len(writer.rows)

    def answer(batch: Sequence[Record], batch_size: int) -> list[dict[str, Any]]:
        return runner.answer(batch)

    desc = f"{runner.pruning.method} {Path(output).parent.name}"
    answer_in_batches(writer, records, answer, g.chunk_batches, desc, log)
    writer.check_complete()
    if importance_path is not None:
        write_importance(
            importance_path, [{"question_id": r["question_id"], "importance": r["importance"]} for r in writer.rows]
        )
    writer.finish([{k: v for k, v in row.items() if k != "importance"} for row in writer.rows])
    return done
