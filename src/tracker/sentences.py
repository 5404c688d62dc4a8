"""Splitting news text into sentences, for figures, names and summaries. Pure functions.

News copy is full of periods that end nothing: "U.S.", "Jr.", "Aug. 14", "St. Louis", "$1.3
million". A sentence ends at `.`, `!` or `?` (and closing quotes) followed by a space and a
capital letter, a digit or an opening quote, unless the word before the period is one of those.
"""

from __future__ import annotations

import re

_ABBREVIATIONS_TEXT = """
    mr mrs ms dr prof gen sen rep gov lt col sgt capt cmdr adm maj st jr sr inc corp co ltd no
    vs etc jan feb mar apr jun jul aug sep sept oct nov dec mt ft ave blvd dept univ approx
    est fig pres gob
"""
_ABBREVIATIONS = frozenset(_ABBREVIATIONS_TEXT.split())
# `[.!?][.!?]*` rather than `[.!?]+`: a pattern that begins with a set of characters lets the
# engine skip to them instead of trying every place (twice as fast over news copy).
_END = re.compile(r"""([.!?][.!?]*["'”’)\]]*)\s+(?=["'“‘(\[]?[A-Z0-9ÁÉÍÓÚÑ¿¡])""")
_INITIALS = re.compile(r"(?:[A-Za-z]\.)*[A-Za-z]")


def sentences(text: str) -> list[str]:
    """The sentences of `text`, in order, each stripped; empty input gives none."""
    return [text[start:end] for start, end in sentence_spans(text)]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Where each sentence of `text` starts and ends, without the space around it."""
    found: list[tuple[int, int]] = []
    start = 0
    for end in _END.finditer(text):
        if end.group(1) == "." and _keeps_going(_word_before(text, start, end.start(1))):
            continue
        _add(found, text, start, end.end(1))
        start = end.end()
    _add(found, text, start, len(text))
    return found


def _word_before(text: str, start: int, end: int) -> str:
    r"""What `(\S+)$` finds in `text[start:end]` (its last word, if nothing but a final newline
    follows it), or "", by looking back from `end` rather than trying every place from `start`
    (which read each sentence once per period in it)."""
    if end > start and text[end - 1] == "\n":
        end -= 1  # `$` also matches before a final newline
    if end <= start or text[end - 1].isspace():
        return ""
    return text[start:end].rsplit(None, 1)[-1]


def _add(found: list[tuple[int, int]], text: str, start: int, end: int) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        found.append((start, end))


def _keeps_going(word: str) -> bool:
    """Whether a period after `word` is an abbreviation's, not a sentence's end."""
    bare = word.strip("(\"'“‘").rstrip(".")
    if bare.lower() in _ABBREVIATIONS:
        return True
    # Initials and dotted acronyms: "J.", "U.S", "U.N", "a.m".
    return bool(_INITIALS.fullmatch(bare))
