r"""VQA accuracy, exactly as the official GT-Vision-Lab/VQA evaluator computes it.

Reference: ``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` on the master
branch of https://github.com/GT-Vision-Lab/VQA (the version with the answer
pre-clean loop and the ``len(set(gtAnswers)) > 1`` guard around *both*
normalisation steps, confirmed by the maintainer in GT-Vision-Lab/VQA#14).

The official code has several quirks (a malformed regex, a flag passed as a
count, a normalisation that is skipped when all annotators agree). They are
kept on purpose: published VQA numbers were computed with them, and the point
of this module is to reproduce those numbers bit for bit. Each quirk is
documented where it lives.

Variants of :func:`vqa_score`:

``"official"``
    The current master behaviour (default).
``"legacy"``
    The older evaluator (2016-2017 master): the prediction is always fully
    normalised; the answers only get :func:`process_punctuation`, and only when
    they are not all identical. Answers are not pre-cleaned there either.
``"lmms_eval"``
    lmms-eval's scoring (EvolvingLMMs-Lab/lmms-eval,
    ``lmms_eval/tasks/_task_utils/vqa_eval_metric.py`` ``EvalAIAnswerProcessor``),
    which differs by dataset, so :func:`vqa_score` takes the ``dataset_format``:

    - ``"textvqa"`` (``lmms_eval/tasks/textvqa/utils.py``,
      ``textvqa_process_results``): the prediction and every answer go through
      the whole processor (:func:`lmms_eval_process`): lowercase, delete every
      "," and "?", split "'s" off as " 's", strip; then pre-clean, punctuation
      and the word step. Always, whether or not the answers agree.
    - any other format, or none (``lmms_eval/tasks/vqav2/utils.py``,
      ``vqav2_process_results``): pre-clean, then punctuation and the word step,
      always, whether or not the answers agree.

    Its punctuation step (:func:`lmms_eval_punctuation`) runs under Python 3, so
    its digits are Unicode digits, and its comma rule is digit, *one or more*
    commas, digit (``(?<=\d)(\,)+(?=\d)``: "1,,2" counts too).

``official`` and ``legacy`` ignore ``dataset_format``: the official evaluator
scores VQAv2 and TextVQA alike.

Python 2 vs 3: the official evaluator ran under Python 2, where ``\d`` without
``re.UNICODE`` matches only the ASCII digits 0-9. Its period and comma regexes
are therefore compiled here with ``re.ASCII``: "1.５" loses its period ("1５")
and Arabic-Indic "١,٢" has no digit-comma-digit, as in the official numbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "ARTICLES",
    "COMMA_STRIP",
    "CONTRACTIONS",
    "DATASET_FORMATS",
    "LMMS_COMMA_STRIP",
    "LMMS_PERIOD_STRIP",
    "MANUAL_MAP",
    "METRICS",
    "PERIOD_STRIP",
    "PERIOD_STRIP_MAX",
    "PUNCT",
    "VARIANTS",
    "accuracy_report",
    "exact_match",
    "lmms_eval_process",
    "lmms_eval_punctuation",
    "lmms_eval_word_tokenize",
    "metric_score",
    "normalize_answer",
    "pre_clean",
    "process_digit_article",
    "process_punctuation",
    "vqa_score",
]

# --------------------------------------------------------------------------
# Constants, verbatim from the official evaluator
# --------------------------------------------------------------------------

#: Contraction table, verbatim (ASCII apostrophes, as on master). Keys with
#: capitals ("Im", "Ive", "Id've", "I'dve") can never match because words are
#: lowercased first, and "somebody'd" maps *to* "somebodyd"; both are kept as is
#: because they are part of what the official metric computes.
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've",
    "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's",
    "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's",
    "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've",
    "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're",
    "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've",
    "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd",
    "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll", "whos": "who's",
    "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all",
    "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}  # fmt: skip

#: Number words mapped to digits (whole words only; "eleven" is not mapped).
MANUAL_MAP: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip

#: Articles dropped as whole words.
ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})

#: Punctuation handled by :func:`process_punctuation`, in the official order
#: (21 characters; note that ':' and "'" are *not* in it, and '.' is handled
#: separately by :data:`PERIOD_STRIP`).
PUNCT: tuple[str, ...] = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
    ">", "<", "@", "`", ",", "?", "!",
)  # fmt: skip

#: Official period regex. ``(?!<=\d)`` was meant to be the lookbehind
#: ``(?<!\d)`` but is a negative *lookahead* for the literal "<=" followed by a
#: digit, which never blocks a match before a '.'. So every period that is not
#: followed by an ASCII digit is removed ("5." -> "5", "2.5" kept, "1.５" ->
#: "1５"). Kept as is. ``re.ASCII``: the official evaluator ran under Python 2,
#: whose ``\d`` (without ``re.UNICODE``) is [0-9].
PERIOD_STRIP: re.Pattern[str] = re.compile(r"(?!<=\d)(\.)(?!\d)", re.ASCII)

#: An ASCII digit, a comma, an ASCII digit ("1,000"; not Arabic-Indic "١,٢",
#: Python 2 as above): if present anywhere in the input, every punctuation
#: character is deleted instead of being replaced by a space.
COMMA_STRIP: re.Pattern[str] = re.compile(r"(\d)(,)(\d)", re.ASCII)

#: lmms-eval's period regex: the official pattern under Python 3, so any
#: Unicode digit after the period keeps it ("1.５" stays).
LMMS_PERIOD_STRIP: re.Pattern[str] = re.compile(r"(?!<=\d)(\.)(?!\d)")

#: lmms-eval's comma regex: a Unicode digit, one or more commas, a Unicode digit.
LMMS_COMMA_STRIP: re.Pattern[str] = re.compile(r"(?<=\d)(\,)+(?=\d)")

#: The official code calls ``periodStrip.sub("", outText, re.UNICODE)``:
#: ``re.UNICODE`` (== 32) lands in the positional *count* argument, so at most
#: 32 periods are removed. Kept as is.
PERIOD_STRIP_MAX: int = int(re.UNICODE)

VARIANTS: tuple[str, ...] = ("official", "legacy", "lmms_eval")
#: Dataset formats a scorer may be told (the cache's formats); None means unknown.
DATASET_FORMATS: tuple[str, ...] = ("vqav2", "textvqa", "kvasir", "swap_pairs",
                                    "jsonl", "csv", "parquet", "hf_datasets")  # fmt: skip
METRICS: tuple[str, ...] = ("vqa_accuracy", "exact_match")


# --------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------


def pre_clean(text: str) -> str:
    """Replace newlines and tabs by spaces and strip, as the evaluator does first."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def _punctuation(text: str, comma_strip: re.Pattern[str], period_strip: re.Pattern[str]) -> str:
    out = text
    has_digit_comma_digit = comma_strip.search(text) is not None
    for p in PUNCT:
        if (p + " " in text or " " + p in text) or has_digit_comma_digit:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return period_strip.sub("", out, count=PERIOD_STRIP_MAX)


def process_punctuation(text: str) -> str:
    """The official ``processPunctuation``.

    A punctuation character is deleted when it touches a space somewhere in the
    text, or when the text contains digit-comma-digit; otherwise it becomes a
    space. Both tests look at the *original* input, not the text as it is being
    edited, exactly like the official loop (it tests ``inText`` but edits
    ``outText``). Then periods not followed by a digit are removed, at most
    :data:`PERIOD_STRIP_MAX` of them (see the constants for both quirks).
    Digits are ASCII digits only, as under the official Python 2.
    """
    return _punctuation(text, COMMA_STRIP, PERIOD_STRIP)


def lmms_eval_punctuation(text: str) -> str:
    """lmms-eval's ``EvalAIAnswerProcessor.process_punctuation``.

    The official step with lmms-eval's regexes: Unicode digits, and a comma
    rule of digit, one or more commas, digit (:data:`LMMS_COMMA_STRIP`).
    """
    return _punctuation(text, LMMS_COMMA_STRIP, LMMS_PERIOD_STRIP)


def process_digit_article(text: str) -> str:
    """The official ``processDigitArticle``.

    Lowercase, split on whitespace (which also collapses runs of spaces), map
    number words to digits, drop articles, then expand contractions, and join
    with single spaces. Number words are mapped before the article test, and
    contractions are looked up after it, in the official order.
    """
    words = [MANUAL_MAP.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def normalize_answer(text: str) -> str:
    """Full normalisation: pre-clean, punctuation, then digits/articles/contractions."""
    return process_digit_article(process_punctuation(pre_clean(text)))


def lmms_eval_word_tokenize(text: str) -> str:
    """lmms-eval's ``EvalAIAnswerProcessor.word_tokenize``.

    Lowercase, delete every "," and "?", put a space before every "'s"
    ("joe's" -> "joe 's"), strip.
    """
    return text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()


def lmms_eval_process(text: str) -> str:
    """lmms-eval's ``EvalAIAnswerProcessor.__call__``, its TextVQA normalisation.

    :func:`lmms_eval_word_tokenize`, pre-clean, :func:`lmms_eval_punctuation`,
    the word step. The commas are gone before the punctuation step, so its
    digit-comma-digit rule never fires: "1,000 x-ray" -> "1000 x ray" (official
    "1000 xray"), "red,white" -> "redwhite"; "what's" -> "what 's", "whats" -> "what's".
    """
    return process_digit_article(lmms_eval_punctuation(pre_clean(lmms_eval_word_tokenize(text))))


# --------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------


def _check_variant(variant: str, dataset_format: str | None = None) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown VQA variant {variant!r}; expected one of {VARIANTS}")
    if dataset_format is not None and dataset_format not in DATASET_FORMATS:
        raise ValueError(f"unknown dataset format {dataset_format!r}; expected one of {DATASET_FORMATS} or None")


def _prepare(prediction: str, answers: Sequence[str], variant: str, fmt: str | None) -> tuple[str, list[str]]:
    """Apply the variant's pre-clean and normalisation to prediction and answers."""
    if variant == "lmms_eval":
        if fmt == "textvqa":
            # lmms_eval/tasks/textvqa/utils.py: the whole processor on both, always.
            return lmms_eval_process(prediction), [lmms_eval_process(a) for a in answers]
        # lmms_eval/tasks/vqav2/utils.py: pre-clean, punctuation, word step, always.
        pred = process_digit_article(lmms_eval_punctuation(pre_clean(prediction)))
        return pred, [process_digit_article(lmms_eval_punctuation(pre_clean(a))) for a in answers]

    if variant == "legacy":
        # Older master: answers are not pre-cleaned, the prediction always is
        # and is always fully normalised; answers only get punctuation, and
        # only when the annotators disagree.
        pred = normalize_answer(prediction)
        gts = list(answers)
        if len(set(gts)) > 1:
            gts = [process_punctuation(a) for a in gts]
        return pred, gts

    pred = pre_clean(prediction)
    gts = [pre_clean(a) for a in answers]
    # "official": normalise only when the annotators disagree. The maintainer's
    # rationale (GT-Vision-Lab/VQA#14): unanimous answers are often OCR-style
    # text that must be matched verbatim. Consequence: "Red" vs ten "red" is 0.
    if len(set(gts)) > 1:
        pred = process_digit_article(process_punctuation(pred))
        gts = [process_digit_article(process_punctuation(a)) for a in gts]
    return pred, gts


def vqa_score(
    prediction: str, answers: Sequence[str], variant: str = "official", dataset_format: str | None = None
) -> float:
    """VQA accuracy of one prediction against its annotators' answers, in [0, 1].

    `variant` picks the normalisation (module docstring); `dataset_format` (one of
    :data:`DATASET_FORMATS`, or None) matters to ``"lmms_eval"`` only, which
    scores ``"textvqa"`` with lmms-eval's TextVQA processing.

    For each annotator i, count the *other* annotators j != i (by position, as
    the official code compares answer dicts that differ in ``answer_id``) whose
    processed answer equals the processed prediction; acc_i = min(1, count/3);
    the score is the mean of acc_i ("averaged over all 10 choose 9 subsets").

    Works for any number of answers >= 1. With a single answer there are no
    "other" annotators, so the score is always 0: single-answer datasets should
    use :func:`exact_match` instead.
    """
    _check_variant(variant, dataset_format)
    if len(answers) == 0:
        raise ValueError("vqa_score needs at least one ground-truth answer")
    pred, gts = _prepare(prediction, answers, variant, dataset_format)
    matches = [gt == pred for gt in gts]
    total = sum(matches)
    # Others matching for annotator i = all matches minus i's own match.
    accs = [min(1.0, (total - own) / 3) for own in matches]
    return sum(accs) / len(accs)


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised answer, else 0.0.

    For datasets with a single (or few, equally valid) reference answers, where
    the leave-one-out VQA accuracy is meaningless.
    """
    pred = normalize_answer(prediction)
    return 1.0 if any(normalize_answer(a) == pred for a in answers) else 0.0


# --------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------


def metric_score(
    prediction: str,
    answers: Sequence[str],
    metric: str,
    variant: str = "official",
    dataset_format: str | None = None,
) -> float:
    """One prediction's score under `metric`: the VQA accuracy (see :func:`vqa_score` for
    `variant` and `dataset_format`) or exact match (which ignores both)."""
    if metric == "vqa_accuracy":
        return vqa_score(prediction, answers, variant=variant, dataset_format=dataset_format)
    return exact_match(prediction, answers)


def _mean_block(scores: list[float]) -> dict[str, Any]:
    return {"n": len(scores), "accuracy": sum(scores) / len(scores) if scores else 0.0}


def accuracy_report(
    items: Iterable[Mapping[str, Any]],
    metric: str = "vqa_accuracy",
    variant: str = "official",
    dataset_format: str | None = None,
) -> dict[str, Any]:
    """Overall and per-type accuracy over items (`variant` and `dataset_format` as in
    :func:`vqa_score`).

    Each item has ``prediction``, ``answers`` and optionally ``question_type``, ``answer_type``
    and ``pair`` (a question pair's id, as swap pairs have). Accuracies are fractions in [0, 1],
    not the official rounded percentages. Items whose type is None (or missing) are left out of
    that breakdown only. With pairs, ``both_correct`` is the share of pairs whose questions all
    score 1. An empty input gives ``n == 0`` and accuracy 0.0.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    _check_variant(variant, dataset_format)

    scores: list[float] = []
    groups: dict[str, dict[str, list[float]]] = {"answer_type": {}, "question_type": {}, "pair": {}}
    for item in items:
        score = metric_score(item["prediction"], item["answers"], metric, variant, dataset_format)
        scores.append(score)
        for key, by_value in groups.items():
            if item.get(key) is not None:
                by_value.setdefault(str(item[key]), []).append(score)

    report = _mean_block(scores)
    report["per_answer_type"] = {t: _mean_block(s) for t, s in groups["answer_type"].items()}
    report["per_question_type"] = {t: _mean_block(s) for t, s in groups["question_type"].items()}
    if groups["pair"]:
        report["both_correct"] = _mean_block([float(min(s) == 1.0) for s in groups["pair"].values()])
    return report
