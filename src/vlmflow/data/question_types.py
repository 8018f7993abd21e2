"""Question types inferred from the question text, and the answer options each type offers.

Datasets label their questions differently (VQAv2's "what color is the" prefixes, Kvasir-VQA's
18 fixed strings, swap pairs' categories) or not at all; a per-type breakdown and closed-form
prompting need one shared set of types. Kvasir-VQA's fixed strings map to their official
categories; any other question is typed by a few rules on its wording.

Answer options ("candidates") come from the question itself when it offers them ("left or
right"), else from the answers seen in a dataset for that type. A Kvasir fixed question is its
own vocabulary key: options for "What type of polyp is present?" are the answers seen for that
exact string, never those of "What type of procedure ...?", although both are single_choice.

A dataset's config may add rules on top (`QuestionRule`: a pattern, its type and optionally its
candidates), tried in order before the built-in ones; a rule is its own vocabulary key.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vlmflow.core.records import Record
from vlmflow.data import kvasir_questions as kvasir
from vlmflow.data.vqa_metric import normalize_answer

QUESTION_TYPES: tuple[str, ...] = (
    "yes_no",
    "color",
    "count_numeric",
    "size_numeric",
    "location",
    "single_choice",
    "multi_choice",
    "open_ended",
)

#: Kvasir-VQA's fixed question strings -> their official categories.
KVASIR_TYPES: dict[str, str] = {
    kvasir.Q_ABNORMALITY: "multi_choice",
    kvasir.Q_LANDMARK: "multi_choice",
    kvasir.Q_INSTRUMENT: "multi_choice",
    kvasir.Q_REMOVED: "yes_no",
    kvasir.Q_N_FINDINGS: "count_numeric",
    kvasir.Q_N_INSTRUMENTS: "count_numeric",
    kvasir.Q_N_POLYPS: "count_numeric",
    kvasir.Q_BOX: "yes_no",
    kvasir.Q_TEXT: "yes_no",
    kvasir.Q_EASY: "yes_no",
    kvasir.Q_ABNORMALITY_COLOUR: "color",
    kvasir.Q_LANDMARK_COLOUR: "color",
    kvasir.Q_SIZE: "size_numeric",
    kvasir.Q_TYPE: "single_choice",
    kvasir.Q_PROCEDURE: "single_choice",
    kvasir.Q_ABNORMALITY_WHERE: "location",
    kvasir.Q_LANDMARK_WHERE: "location",
    kvasir.Q_INSTRUMENT_WHERE: "location",
}

#: Types whose options are drawn from the answers seen in a dataset.
VOCABULARY_TYPES: frozenset[str] = frozenset({"color", "location", "single_choice", "multi_choice"})

AUXILIARY_VERBS: frozenset[str] = frozenset(
    {"is", "are", "was", "were", "does", "do", "did", "can", "could", "has", "have", "had",
     "will", "would", "should"}
)  # fmt: skip

_COLOR = re.compile(r"\b(?:what|which)(?: is| are)?(?: the)? colou?rs?\b")  # "what is the color of the ..."
_COUNT = re.compile(r"\bhow many\b")
_SIZE = re.compile(r"\b(?:what size|what is the size|how big|how large)\b")
_WHERE = re.compile(r"\bwhere\b")
# "A or B" with single words, skipping an article before B ("a cat or a dog").
_OPTIONS = re.compile(r"\b([a-z]+) or (?:(?:a|an|the) )?([a-z]+)\b")


@dataclasses.dataclass(frozen=True)
class QuestionRule:
    """A question whose text matches `pattern` (a case-insensitive regex, searched) has `type`;
    its options are `candidates`, else the answers seen for questions of this rule."""

    pattern: str
    type: str
    candidates: tuple[str, ...] | None = None

    @classmethod
    def from_config(cls, items: Sequence[Mapping[str, Any]], where: str) -> tuple[QuestionRule, ...]:
        """The rules of a dataset's `question_types` list; a bad pattern or type names its key."""
        rules = []
        for i, item in enumerate(items):
            try:
                re.compile(item["pattern"])
            except re.error as err:
                raise ValueError(f"config: {where}[{i}].pattern: not a regular expression ({err})") from err
            if item["type"] not in QUESTION_TYPES:
                raise ValueError(f"config: {where}[{i}].type: {item['type']!r} is not one of {QUESTION_TYPES}")
            candidates = item.get("candidates")
            rules.append(cls(item["pattern"], item["type"], tuple(candidates) if candidates else None))
        return tuple(rules)

    def matches(self, question: str) -> bool:
        return re.search(self.pattern, question, flags=re.IGNORECASE) is not None


def matching_rule(question: str, rules: Sequence[QuestionRule]) -> QuestionRule | None:
    return next((rule for rule in rules if rule.matches(question)), None)


def options_in_question(question: str) -> list[str] | None:
    """The alternatives of an "A or B" question (["left", "right"]), or None if it has none."""
    match = _OPTIONS.search(question.lower())
    return [match.group(1), match.group(2)] if match else None


def infer_question_type(question: str, rules: Sequence[QuestionRule] = ()) -> str:
    """One of QUESTION_TYPES: the first matching `rules`' type, a Kvasir fixed string's category,
    else by the question's wording."""
    if (rule := matching_rule(question, rules)) is not None:
        return rule.type
    if (known := KVASIR_TYPES.get(question.strip())) is not None:
        return known
    text = question.strip().lower()
    if _COLOR.search(text):
        return "color"
    if _COUNT.search(text):
        return "count_numeric"
    if _SIZE.search(text):
        return "size_numeric"
    if _WHERE.search(text):
        return "location"
    if options_in_question(text) is not None:
        return "single_choice"
    words = text.split()
    if words and words[0] in AUXILIARY_VERBS:
        return "yes_no"
    return "open_ended"


def inferred_type(record: Record) -> str:
    """The record's inferred question type (its dataset label, if any, is left alone)."""
    return infer_question_type(record.question)


def vocabulary_key(question: str, qtype: str, rules: Sequence[QuestionRule] = ()) -> str:
    """Where a question's options live: its rule's pattern, its own string if it is a Kvasir fixed
    one, else its type.

    Kvasir's fixed strings each have their own answer space (polyp types vs procedures), so
    pooling by type would offer the wrong options; free-form questions are pooled by type.
    """
    if (rule := matching_rule(question, rules)) is not None:
        return f"rule:{rule.pattern}"
    return question.strip() if question.strip() in KVASIR_TYPES else qtype


def _surface(text: str) -> str:
    """An answer as shown to a model: lower case, single spaces (keeps "none", "<5mm")."""
    return " ".join(text.lower().split())


def answer_vocabulary(
    records: Sequence[Record],
    qtype_of: Callable[[Record], str] = inferred_type,
    rules: Sequence[QuestionRule] = (),
) -> dict[str, list[str]]:
    """Sorted distinct answers per vocabulary key (see `vocabulary_key`).

    Answers are deduplicated by `normalize_answer`, but kept in their lower-cased surface form,
    because the full normalisation turns "none" into "0" and "center-left" into "center left",
    which would be confusing options; scoring normalises both sides anyway. multi_choice answers
    stay whole ("tube; biopsy forceps" is one option), so constrained decoding can produce every
    answer the data has. Free-form questions only get a vocabulary for VOCABULARY_TYPES;
    Kvasir fixed strings get one for every type (their yes/no questions also take "not relevant").
    """
    seen: dict[str, dict[str, str]] = {}  # key -> normalised answer -> smallest surface form
    for record in records:
        qtype = qtype_of(record)
        key = vocabulary_key(record.question, qtype, rules)
        if key == qtype and qtype not in VOCABULARY_TYPES:
            continue
        forms = seen.setdefault(key, {})
        for answer in record.answers:
            surface, norm = _surface(answer), normalize_answer(answer)
            if norm and (norm not in forms or surface < forms[norm]):
                forms[norm] = surface
    return {key: sorted(forms.values()) for key, forms in seen.items() if forms}


def candidates_for(
    qtype: str, question: str, vocabulary: dict[str, list[str]], rules: Sequence[QuestionRule] = ()
) -> list[str] | None:
    """The answer options for a question, or None for numeric and open-ended ones.

    A matching rule's own candidates come first. yes_no: "yes", "no", then any other answer seen
    for that same fixed question. single_choice: the options the question names, else the
    vocabulary. color, location, multi_choice: the vocabulary. A type with no vocabulary entry
    gets None.
    """
    if (rule := matching_rule(question, rules)) is not None and rule.candidates:
        return list(rule.candidates)
    seen = vocabulary.get(vocabulary_key(question, qtype, rules))
    if qtype == "yes_no":
        return ["yes", "no"] + [a for a in seen or [] if a not in ("yes", "no")]
    if qtype == "single_choice" and (options := options_in_question(question)) is not None:
        return options
    if qtype in VOCABULARY_TYPES and seen:
        return list(seen)
    return None


def enrich(
    records: Sequence[Record],
    vocabulary_records: Sequence[Record] | None = None,
    rules: Sequence[QuestionRule] = (),
) -> list[Record]:
    """Copies of `records` with candidates filled where missing and source["inferred_type"] set,
    the config's `rules` tried before the built-in ones.

    Existing candidates (swap pairs carry theirs) are kept as they are. Options are drawn from
    `vocabulary_records` (e.g. the train split, so evaluation does not peek at its own answers)
    or, by default, from `records` themselves.
    """

    def qtype_of(record: Record) -> str:
        return infer_question_type(record.question, rules)

    vocabulary = answer_vocabulary(records if vocabulary_records is None else vocabulary_records, qtype_of, rules)
    enriched = []
    for record in records:
        qtype = qtype_of(record)
        candidates = record.candidates
        if candidates is None:
            candidates = candidates_for(qtype, record.question, vocabulary, rules)
        source = {**record.source, "inferred_type": qtype}
        enriched.append(dataclasses.replace(record, candidates=candidates, source=source))
    return enriched
