"""Tests for vlmflow.data.vqa_metric: one test per normalisation rule, scoring, reports,
and hypothesis oracle tests against literal transcriptions of the official
GT-Vision-Lab/VQA master evaluator and of lmms-eval's VQAv2 / TextVQA scoring."""

from __future__ import annotations

import re
import statistics

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlmflow.data.cache import FORMAT_READERS
from vlmflow.data.vqa_metric import (
    CONTRACTIONS,
    DATASET_FORMATS,
    PUNCT,
    accuracy_report,
    exact_match,
    lmms_eval_process,
    lmms_eval_punctuation,
    lmms_eval_word_tokenize,
    metric_score,
    normalize_answer,
    process_digit_article,
    process_punctuation,
    vqa_score,
)

# ==========================================================================
# Oracle: the official evaluator's per-question core, transcribed as closely
# as possible from GT-Vision-Lab/VQA master,
# PythonEvaluationTools/vqaEvaluation/vqaEval.py (class state turned into
# module globals; regex literals made raw to avoid Python 3.12 escape
# warnings, same patterns). The official code ran under Python 2, whose `\d`
# without re.UNICODE is [0-9]: the regexes carry re.ASCII to say the same
# under Python 3.
# ==========================================================================

contractions = {"aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't", \
                "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't", \
                "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't", "hed": "he'd", "hed've": "he'd've", \
                "he'dve": "he'd've", "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", \
                "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's", \
                "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've", \
                "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't", \
                "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", \
                "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", \
                "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", \
                "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've", \
                "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've", \
                "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's", "thered": "there'd", "thered've": "there'd've", \
                "there'dve": "there'd've", "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", \
                "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", \
                "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're", \
                "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's", "whereve": "where've", \
                "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", \
                "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've", \
                "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've", \
                "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", \
                "youll": "you'll", "youre": "you're", "youve": "you've"}  # fmt: skip
manualMap    = { 'none': '0',
                 'zero': '0',
                 'one': '1',
                 'two': '2',
                 'three': '3',
                 'four': '4',
                 'five': '5',
                 'six': '6',
                 'seven': '7',
                 'eight': '8',
                 'nine': '9',
                 'ten': '10'
               }  # fmt: skip
articles     = ['a',
                'an',
                'the'
               ]  # fmt: skip
periodStrip = re.compile(r"(?!<=\d)(\.)(?!\d)", re.ASCII)
commaStrip = re.compile(r"(\d)(\,)(\d)", re.ASCII)
punct        = [';', r"/", '[', ']', '"', '{', '}',
                '(', ')', '=', '+', '\\', '_', '-',
                '>', '<', '@', '`', ',', '?', '!']  # fmt: skip


def processPunctuation(inText):
    outText = inText
    for p in punct:
        if (p + " " in inText or " " + p in inText) or (re.search(commaStrip, inText) != None):  # noqa: E711
            outText = outText.replace(p, "")
        else:
            outText = outText.replace(p, " ")
    outText = periodStrip.sub("", outText, re.UNICODE)
    return outText


def processDigitArticle(inText):
    outText = []
    tempText = inText.lower().split()
    for word in tempText:
        word = manualMap.setdefault(word, word)
        if word not in articles:
            outText.append(word)
        else:
            pass
    for wordId, word in enumerate(outText):
        if word in contractions:
            outText[wordId] = contractions[word]
    outText = " ".join(outText)
    return outText


def oracle_official(prediction, answers):
    """The `evaluate` loop body of current master, for one question."""
    gts = {0: {"answers": [{"answer": a, "answer_id": i + 1} for i, a in enumerate(answers)]}}
    res = {0: {"answer": prediction}}
    quesId = 0
    for ansDic in gts[quesId]["answers"]:
        ansDic["answer"] = ansDic["answer"].replace("\n", " ")
        ansDic["answer"] = ansDic["answer"].replace("\t", " ")
        ansDic["answer"] = ansDic["answer"].strip()
    resAns = res[quesId]["answer"]
    resAns = resAns.replace("\n", " ")
    resAns = resAns.replace("\t", " ")
    resAns = resAns.strip()
    gtAcc = []
    gtAnswers = [ans["answer"] for ans in gts[quesId]["answers"]]

    if len(set(gtAnswers)) > 1:
        for ansDic in gts[quesId]["answers"]:
            ansDic["answer"] = processPunctuation(ansDic["answer"])
            ansDic["answer"] = processDigitArticle(ansDic["answer"])
        resAns = processPunctuation(resAns)
        resAns = processDigitArticle(resAns)

    for gtAnsDatum in gts[quesId]["answers"]:
        otherGTAns = [item for item in gts[quesId]['answers'] if item!=gtAnsDatum]  # fmt: skip
        matchingAns = [item for item in otherGTAns if item['answer']==resAns]  # fmt: skip
        acc = min(1, float(len(matchingAns))/3)  # fmt: skip
        gtAcc.append(acc)
    avgGTAcc = float(sum(gtAcc))/len(gtAcc)  # fmt: skip
    return avgGTAcc


def oracle_legacy(prediction, answers):
    """The `evaluate` loop body of the older (2017) master, for one question."""
    gts = {0: {"answers": [{"answer": a, "answer_id": i + 1} for i, a in enumerate(answers)]}}
    res = {0: {"answer": prediction}}
    quesId = 0
    resAns = res[quesId]["answer"]
    resAns = resAns.replace("\n", " ")
    resAns = resAns.replace("\t", " ")
    resAns = resAns.strip()
    resAns = processPunctuation(resAns)
    resAns = processDigitArticle(resAns)
    gtAcc = []
    gtAnswers = [ans["answer"] for ans in gts[quesId]["answers"]]
    if len(set(gtAnswers)) > 1:
        for ansDic in gts[quesId]["answers"]:
            ansDic["answer"] = processPunctuation(ansDic["answer"])
    for gtAnsDatum in gts[quesId]["answers"]:
        otherGTAns = [item for item in gts[quesId]["answers"] if item != gtAnsDatum]
        matchingAns = [item for item in otherGTAns if item["answer"] == resAns]
        acc = min(1, float(len(matchingAns)) / 3)
        gtAcc.append(acc)
    return float(sum(gtAcc))/len(gtAcc)  # fmt: skip


# ==========================================================================
# Oracle: lmms-eval, transcribed from EvolvingLMMs-Lab/lmms-eval (commit
# 75571cfe, 2026-08): EvalAIAnswerProcessor in
# lmms_eval/tasks/_task_utils/vqa_eval_metric.py (its CONTRACTIONS,
# NUMBER_MAP, ARTICLES and PUNCTUATIONS tables equal the official ones above,
# checked against that file), textvqa_process_results in
# lmms_eval/tasks/textvqa/utils.py and vqav2_process_results in
# lmms_eval/tasks/vqav2/utils.py. Python 3: Unicode digits.
# ==========================================================================

LMMS_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
LMMS_COMMA_STRIP = re.compile(r"(?<=\d)(\,)+(?=\d)")


def lmms_word_tokenize(word):
    word = word.lower()
    word = word.replace(",", "").replace("?", "").replace("'s", " 's")
    return word.strip()


def lmms_process_punctuation(in_text):
    out_text = in_text
    for p in punct:
        if (p + " " in in_text or " " + p in in_text) or (re.search(LMMS_COMMA_STRIP, in_text) is not None):
            out_text = out_text.replace(p, "")
        else:
            out_text = out_text.replace(p, " ")
    out_text = LMMS_PERIOD_STRIP.sub("", out_text, re.UNICODE)
    return out_text


def lmms_call(item):
    item = lmms_word_tokenize(item)
    item = item.replace("\n", " ").replace("\t", " ").strip()
    item = lmms_process_punctuation(item)
    item = processDigitArticle(item)
    return item


def oracle_lmms_textvqa(prediction, answers):
    resAns = lmms_call(prediction)
    answers = [lmms_call(a) for a in answers]
    gtAcc = []
    for i in range(len(answers)):
        otherGTAns = [answers[j] for j in range(len(answers)) if i != j]
        matchingAns = [item for item in otherGTAns if item == resAns]
        acc = min(1, float(len(matchingAns)) / 3)
        gtAcc.append(acc)
    return statistics.mean(gtAcc)


def oracle_lmms_vqav2(prediction, answers):
    answers = [{"answer": a, "answer_id": i + 1} for i, a in enumerate(answers)]
    resAns = prediction
    for ansDic in answers:
        ansDic["answer"] = ansDic["answer"].replace("\n", " ")
        ansDic["answer"] = ansDic["answer"].replace("\t", " ")
        ansDic["answer"] = ansDic["answer"].strip()
    resAns = resAns.replace("\n", " ")
    resAns = resAns.replace("\t", " ")
    resAns = resAns.strip()
    gtAcc = []
    for ansDic in answers:
        ansDic["answer"] = lmms_process_punctuation(ansDic["answer"])
        ansDic["answer"] = processDigitArticle(ansDic["answer"])
    resAns = lmms_process_punctuation(resAns)
    resAns = processDigitArticle(resAns)
    for gtAnsDatum in answers:
        otherGTAns = [item for item in answers if item != gtAnsDatum]
        matchingAns = [item for item in otherGTAns if item["answer"] == resAns]
        acc = min(1, float(len(matchingAns)) / 3)
        gtAcc.append(acc)
    return statistics.mean(gtAcc)


# ==========================================================================
# Tables
# ==========================================================================


def test_tables_match_official():
    assert contractions == CONTRACTIONS
    assert list(PUNCT) == punct
    assert len(PUNCT) == 21


# ==========================================================================
# Normalisation rules, one per test
# ==========================================================================


def test_punct_adjacent_to_space_is_deleted():
    # "-" touches a space somewhere in the input -> every "-" is deleted.
    assert process_punctuation("x - ray") == "x  ray"
    assert process_punctuation("yes !") == "yes "


def test_punct_not_adjacent_to_space_becomes_space():
    assert process_punctuation("x-ray") == "x ray"
    assert process_punctuation("yes!") == "yes "
    assert normalize_answer("t-shirt") == "t shirt"


def test_punct_space_test_uses_original_input():
    # "/" touches a space in the input, so both "/" are deleted even though the
    # second one does not; "-" does not touch a space, so it becomes a space.
    assert process_punctuation("a / b/c-d") == "a  bc d"


def test_digit_comma_digit_deletes_all_punct():
    assert process_punctuation("1,000") == "1000"
    # The rule applies to every punctuation char in the text, not only commas.
    assert process_punctuation("1,000 x-ray") == "1000 xray"
    # Without digit-comma-digit the comma becomes a space.
    assert process_punctuation("red,blue") == "red blue"


def test_period_not_followed_by_digit_removed():
    assert process_punctuation("5.") == "5"
    assert process_punctuation("yes.") == "yes"
    assert process_punctuation("2.5") == "2.5"
    assert normalize_answer("Mr. Smith") == "mr smith"


def test_period_removal_capped_at_32():
    text = "." * 40
    assert process_punctuation(text) == "." * 8
    assert process_punctuation("a." * 33) == "a" * 32 + "a."


def test_number_words_mapped():
    assert process_digit_article("Two") == "2"
    assert process_digit_article("none zero ten eleven") == "0 0 10 eleven"


def test_articles_dropped():
    assert process_digit_article("The Dog and a cat an apple") == "dog and cat apple"
    assert process_digit_article("theater another") == "theater another"


def test_contractions_expanded():
    assert process_digit_article("dont") == "don't"
    assert process_digit_article("Its Whats") == "its what's"
    # Capitalised keys never match once lowercased (official quirk).
    assert process_digit_article("Im") == "im"


def test_whitespace_collapsed():
    assert process_digit_article("  big    red  ") == "big red"


def test_newline_tab_pre_clean():
    assert normalize_answer("\tred\nball \n") == "red ball"
    # Official: pre-clean applies even when normalisation is skipped.
    assert vqa_score(" red\n", ["red"] * 10) == 1.0


# ==========================================================================
# Scoring
# ==========================================================================


def test_identical_answers_skip_normalisation():
    assert vqa_score("Red", ["red"] * 10, variant="official") == 0.0
    assert vqa_score("Red", ["red"] * 10, variant="lmms_eval") == 1.0
    assert vqa_score("Red", ["red"] * 10, variant="legacy") == 1.0
    assert vqa_score("red", ["red"] * 10) == 1.0


@pytest.mark.parametrize(
    ("k", "expected"),
    [
        (0, 0.0),
        # k matches among 10: the k matching annotators see k-1 others, the
        # 10-k others see k. acc = mean of min(1, count/3).
        (1, (1 * 0 + 9 * (1 / 3)) / 10),
        (2, (2 * (1 / 3) + 8 * (2 / 3)) / 10),
        (3, (3 * (2 / 3) + 7 * 1) / 10),
        (4, 1.0),
    ],
)
def test_min_count_over_three(k, expected):
    answers = ["cat"] * k + ["dog", "cow", "pig", "hen", "owl", "emu", "yak", "elk", "ant", "bee"][: 10 - k]
    assert vqa_score("cat", answers) == pytest.approx(expected)
    assert vqa_score("cat", answers) == pytest.approx(oracle_official("cat", answers))


def test_single_answer_scores_zero_use_exact_match():
    assert vqa_score("red", ["red"]) == 0.0
    assert exact_match("The Red.", ["red"]) == 1.0
    assert exact_match("blue", ["red", "green"]) == 0.0


def test_bad_inputs():
    with pytest.raises(ValueError):
        vqa_score("red", ["red"], variant="nope")
    with pytest.raises(ValueError):
        vqa_score("red", [])
    with pytest.raises(ValueError):
        accuracy_report([], metric="bleu")


# ==========================================================================
# Python 2 digits (official) vs Python 3 digits (lmms-eval)
# ==========================================================================

FULLWIDTH_5 = "\uff15"  # "５"
ARABIC_1, ARABIC_2, ARABIC_3, ARABIC_5 = "\u0661", "\u0662", "\u0663", "\u0665"  # "١", "٢", "٣", "٥"


def test_period_rule_uses_ascii_digits():
    # Python 2's \d is [0-9]: a period before a full-width or Arabic-Indic digit goes.
    assert process_punctuation("1." + FULLWIDTH_5) == "1" + FULLWIDTH_5
    assert process_punctuation(ARABIC_3 + "." + ARABIC_5) == ARABIC_3 + ARABIC_5
    assert process_punctuation("2.5") == "2.5"
    # lmms-eval runs under Python 3: any Unicode digit keeps the period.
    assert lmms_eval_punctuation("1." + FULLWIDTH_5) == "1." + FULLWIDTH_5


def test_comma_rule_uses_ascii_digits():
    arabic = ARABIC_1 + "," + ARABIC_2
    # No ASCII digit-comma-digit: the comma does not touch a space, so it becomes one.
    assert process_punctuation(arabic) == ARABIC_1 + " " + ARABIC_2
    assert process_punctuation(arabic + " x-ray") == ARABIC_1 + " " + ARABIC_2 + " x ray"
    # Python 3 (lmms-eval): Arabic-Indic digits are digits, so every punctuation char is deleted.
    assert lmms_eval_punctuation(arabic) == ARABIC_1 + ARABIC_2
    assert lmms_eval_punctuation(arabic + " x-ray") == ARABIC_1 + ARABIC_2 + " xray"


def test_unicode_digit_scores():
    # Annotators disagree, so normalisation runs; 4 of 10 match -> 1.0, none -> 0.0.
    answers = ["1" + FULLWIDTH_5] * 4 + ["2"] * 6
    assert vqa_score("1." + FULLWIDTH_5, answers) == 1.0
    assert vqa_score("1." + FULLWIDTH_5, answers, variant="lmms_eval", dataset_format="vqav2") == 0.0
    answers = [ARABIC_1 + " " + ARABIC_2] * 4 + ["x"] * 6
    assert vqa_score(ARABIC_1 + "," + ARABIC_2, answers) == 1.0
    assert vqa_score(ARABIC_1 + "," + ARABIC_2, answers, variant="lmms_eval") == 0.0


# ==========================================================================
# lmms-eval: VQAv2 vs TextVQA processing, computed by hand from
# lmms_eval/tasks/_task_utils/vqa_eval_metric.py (EvalAIAnswerProcessor),
# lmms_eval/tasks/textvqa/utils.py and lmms_eval/tasks/vqav2/utils.py
# ==========================================================================


def test_lmms_eval_comma_rule_takes_runs_of_commas():
    # lmms-eval's COMMA_STRIP is (?<=\d)(\,)+(?=\d): "1,,2" is digit-commas-digit, so all
    # punctuation is deleted; the official (\d)(,)(\d) does not match, commas become spaces.
    assert lmms_eval_punctuation("1,,2 x-ray") == "12 xray"
    assert process_punctuation("1,,2 x-ray") == "1  2 x ray"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # lowercase, delete "," and "?", " 's", strip (word_tokenize); then punctuation, words.
        ("Coca-Cola's", "coca cola 's"),  # "-" touches no space -> " "
        ("red,white", "redwhite"),  # the comma is deleted before the punctuation step
        ("Sign?", "sign"),
        ("whats", "what's"),  # the contraction table still applies ...
        ("what's", "what 's"),  # ... but "'s" is split off first, so these differ
        ("1,000 x-ray", "1000 x ray"),  # commas gone: no digit-comma-digit, "-" -> " "
        ("  The Two Dogs\n", "2 dogs"),
    ],
)
def test_lmms_eval_textvqa_processor(text, expected):
    assert lmms_eval_process(text) == expected
    assert lmms_call(text) == expected


def test_lmms_eval_word_tokenize():
    assert lmms_eval_word_tokenize(" Joe's, Diner? ") == "joe 's diner"


@pytest.mark.parametrize(
    ("prediction", "answers", "textvqa", "vqav2", "official"),
    [
        # TextVQA: "redwhite" vs "red white" -> 0; VQAv2 rules: "red white" -> 1. Official:
        # unanimous answers, so no normalisation: "red,white" != "red white" -> 0.
        ("red,white", ["red white"] * 10, 0.0, 1.0, 0.0),
        # TextVQA: "what's" vs "what 's" -> 0; VQAv2 rules: both "what's" -> 1.
        ("whats", ["what's"] * 10, 0.0, 1.0, 0.0),
        # TextVQA: "joe 's" matches the 3 "joe 's": those see 2 others (2/3), the 7 "joes" see
        # 3 (1): (3 * 2/3 + 7) / 10 = 0.9. VQAv2 rules: "joe's" matches nothing.
        ("Joe's", ["joe 's"] * 3 + ["joes"] * 7, 0.9, 0.0, 0.0),
        # TextVQA: "1000 x ray" matches 2: (2 * 1/3 + 8 * 2/3) / 10 = 0.6. VQAv2 rules and
        # official: digit-comma-digit deletes "-" -> "1000 xray" matches 8 -> 1.0.
        ("1,000 x-ray", ["1000 x ray"] * 2 + ["1000 xray"] * 8, 0.6, 1.0, 1.0),
        # Both lmms-eval paths always normalise; the official skips it for unanimous answers.
        ("Red", ["red"] * 10, 1.0, 1.0, 0.0),
    ],
)
def test_lmms_eval_textvqa_vs_vqav2(prediction, answers, textvqa, vqav2, official):
    assert vqa_score(prediction, answers, "lmms_eval", "textvqa") == pytest.approx(textvqa)
    assert vqa_score(prediction, answers, "lmms_eval", "vqav2") == pytest.approx(vqav2)
    assert vqa_score(prediction, answers, "lmms_eval") == pytest.approx(vqav2)  # unknown: VQAv2
    assert oracle_lmms_textvqa(prediction, answers) == pytest.approx(textvqa)
    assert oracle_lmms_vqav2(prediction, answers) == pytest.approx(vqav2)
    # The official and legacy variants score every dataset alike.
    for fmt in (None, *DATASET_FORMATS):
        assert vqa_score(prediction, answers, "official", fmt) == official
        assert vqa_score(prediction, answers, "legacy", fmt) == vqa_score(prediction, answers, "legacy")


def test_dataset_format_reaches_the_scorer():
    items = [{"prediction": "red,white", "answers": ["red white"] * 10}]
    assert metric_score("red,white", ["red white"] * 10, "vqa_accuracy", "lmms_eval", "textvqa") == 0.0
    assert accuracy_report(items, variant="lmms_eval", dataset_format="textvqa")["accuracy"] == 0.0
    assert accuracy_report(items, variant="lmms_eval", dataset_format="vqav2")["accuracy"] == 1.0
    # exact_match ignores variant and format.
    assert metric_score("red,white", ["red white"], "exact_match", "lmms_eval", "textvqa") == 1.0


def test_dataset_formats_are_the_cache_formats():
    assert set(DATASET_FORMATS) == set(FORMAT_READERS)
    with pytest.raises(ValueError, match="dataset format"):
        vqa_score("red", ["red"], dataset_format="TextVQA")


# ==========================================================================
# Reports
# ==========================================================================


def test_accuracy_report_breakdown():
    items = [
        {"prediction": "yes", "answers": ["yes"] * 10, "question_type": "is the", "answer_type": "yes/no"},
        {"prediction": "no", "answers": ["yes"] * 10, "question_type": "is the", "answer_type": "yes/no"},
        {"prediction": "two", "answers": ["2"] * 9 + ["3"], "question_type": "how many", "answer_type": "number"},
        {"prediction": "red", "answers": ["red"] * 10, "question_type": None, "answer_type": None},
    ]
    report = accuracy_report(items)
    assert report["n"] == 4
    assert report["accuracy"] == pytest.approx(3 / 4)
    assert report["per_answer_type"] == {
        "yes/no": {"n": 2, "accuracy": 0.5},
        "number": {"n": 1, "accuracy": 1.0},
    }
    assert report["per_question_type"] == {
        "is the": {"n": 2, "accuracy": 0.5},
        "how many": {"n": 1, "accuracy": 1.0},
    }
    em = accuracy_report(items, metric="exact_match")
    assert em["accuracy"] == pytest.approx(3 / 4)
    assert accuracy_report([])["n"] == 0


# ==========================================================================
# Oracle (hypothesis)
# ==========================================================================

VOCAB = [
    "yes", "Yes", "YES", "no", "No.", "yes!", "yes !", "red", "Red", " red", "red ", "red\n", "\tred",
    "two", "Two", "2", "2.", "2.5", "2.50", "1,000", "1000", "1 000", "10", "ten", "none", "0", "zero",
    "the dog", "a dog", "dog", "an apple", "The Apple", "dont", "don't", "Dont", "whats", "what's", "Im",
    "its", "x-ray", "x - ray", "x ray", "t-shirt", "t shirt", "tshirt", "red,blue", "red, blue", "1,2",
    "3,4 x-ray", "U.S.A.", "usa", "mr. smith", "mr smith", "a.b", "...", "." * 40, "a." * 33,
    "(left)", "left", "[right]", "right", "blue/green", "blue / green", "@home", "home?", "home",
    "\"quoted\"", "quoted", "a_b", "a b", "<3", "3", "3:00", "3 00", "  ", "", "O'Clock", "oclock",
    "somebody'd", "somebodyd", "Y'all", "yall", "y'all", "I'm", "Ive",
    "1.\uff15", "1\uff15", "\u0661,\u0662", "\u0661 \u0662", "\u0661\u0662", "\u0663.\u0665", "1,,2", "1 2", "12",
    "Joe's", "joe 's", "joes", "what?", "red,white", "redwhite", "red white", "1,000 x-ray", "1000 x ray",
]  # fmt: skip

tokens = st.one_of(st.sampled_from(VOCAB), st.text(max_size=12))
answer_lists = st.one_of(
    st.lists(tokens, min_size=1, max_size=12),
    # Unanimous lists exercise the "no normalisation" branch.
    st.builds(lambda a, n: [a] * n, tokens, st.integers(1, 10)),
    # Ten answers from a small pool: realistic VQA agreement patterns.
    st.lists(st.sampled_from(VOCAB[:20]), min_size=10, max_size=10),
)

# Ways a model's output differs from an annotator's answer only by what the
# normalisation is meant to absorb (case, punctuation, articles, spacing).
PERTURBATIONS = [
    lambda s: s, str.upper, str.lower, str.title, lambda s: s + ".", lambda s: "the " + s,
    lambda s: s + "!", lambda s: " " + s + "\n", lambda s: s.replace(".", ""),
    lambda s: s.replace(" ", ""), lambda s: s.replace("-", " "), lambda s: s.replace(",", ""),
]  # fmt: skip


@st.composite
def questions(draw):
    """(prediction, answers): the prediction is random or a perturbed answer."""
    answers = draw(answer_lists)
    if draw(st.booleans()):
        prediction = draw(st.sampled_from(PERTURBATIONS))(draw(st.sampled_from(answers)))
    else:
        prediction = draw(tokens)
    return prediction, answers


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(question=questions())
def test_official_matches_oracle(question):
    prediction, answers = question
    assert vqa_score(prediction, answers, variant="official") == oracle_official(prediction, answers)


@settings(max_examples=200, deadline=None)
@given(question=questions())
def test_legacy_matches_oracle(question):
    prediction, answers = question
    assert vqa_score(prediction, answers, variant="legacy") == oracle_legacy(prediction, answers)


@settings(max_examples=300, deadline=None)
@given(text=tokens)
def test_normalisation_steps_match_oracle(text):
    assert process_punctuation(text) == processPunctuation(text)
    assert process_digit_article(text) == processDigitArticle(text)
    assert lmms_eval_punctuation(text) == lmms_process_punctuation(text)
    assert lmms_eval_process(text) == lmms_call(text)


# lmms-eval averages with statistics.mean (exact, then rounded), vqa_score with sum / len: the two
# may differ in the last bit, so these compare to 1e-12.
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(question=questions())
def test_lmms_eval_textvqa_matches_oracle(question):
    prediction, answers = question
    expected = oracle_lmms_textvqa(prediction, answers)
    assert vqa_score(prediction, answers, "lmms_eval", "textvqa") == pytest.approx(expected, abs=1e-12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(question=questions())
def test_lmms_eval_vqav2_matches_oracle(question):
    prediction, answers = question
    expected = oracle_lmms_vqav2(prediction, answers)
    assert vqa_score(prediction, answers, "lmms_eval", "vqav2") == pytest.approx(expected, abs=1e-12)
