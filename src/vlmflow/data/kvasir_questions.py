"""Kvasir-VQA's fixed question strings, exactly as the upstream dataset has them (typos included).

Every Kvasir-VQA image is asked from this set of 18 questions; the synthetic generator asks them and
the question-type inference maps each to its official category.
"""

from __future__ import annotations

Q_ABNORMALITY = "Are there any abnormalities in the image?"
Q_LANDMARK = "Are there any anatomical landmarks in the image?"
Q_INSTRUMENT = "Are there any instruments in the image?"
Q_REMOVED = "Have all polyps been removed?"
Q_N_FINDINGS = "How many findings are present?"
Q_N_INSTRUMENTS = "How many instrumnets are in the image?"  # sic: the real string's typo
Q_N_POLYPS = "How many polyps are in the image?"
Q_BOX = "Is there a green/black box artefact?"
Q_TEXT = "Is there text?"
Q_EASY = "Is this finding easy to detect?"
Q_ABNORMALITY_COLOUR = "What color is the abnormality? If more than one separate with ;"
Q_LANDMARK_COLOUR = "What color is the anatomical landmark? If more than one separate with ;"
Q_SIZE = "What is the size of the polyp?"
Q_TYPE = "What type of polyp is present?"
Q_PROCEDURE = "What type of procedure is the image taken from?"
Q_ABNORMALITY_WHERE = "Where in the image is the abnormality?"
Q_LANDMARK_WHERE = "Where in the image is the anatomical landmark?"
Q_INSTRUMENT_WHERE = "Where in the image is the instrument?"
QUESTIONS: tuple[str, ...] = (
    Q_ABNORMALITY, Q_LANDMARK, Q_INSTRUMENT, Q_REMOVED, Q_N_FINDINGS, Q_N_INSTRUMENTS, Q_N_POLYPS,
    Q_BOX, Q_TEXT, Q_EASY, Q_ABNORMALITY_COLOUR, Q_LANDMARK_COLOUR, Q_SIZE, Q_TYPE, Q_PROCEDURE,
    Q_ABNORMALITY_WHERE, Q_LANDMARK_WHERE, Q_INSTRUMENT_WHERE,
)  # fmt: skip
