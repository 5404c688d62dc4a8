"""Storyline rules applied to an article's text (issue #4): pure functions.

A term is a word or phrase matched on word boundaries, ignoring case and accents: "Nicolás"
matches "Nicolas", "Sky Group" does not match "SkyGroup" or "sky-high". An article matches a
storyline when every `all` term occurs, at least one `any` term occurs (when `any` is given)
and no `none` term occurs, in its title, summary or content.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from tracker.config import StorylineRules

_WORD = re.compile(r"\w+")
# ASCII bytes folded at C speed: letters lower-cased, digits and "_" (word characters) kept,
# every other byte a space.
_ASCII_FOLD = bytes(
    ord(chr(b).lower()) if chr(b).isalnum() or chr(b) == "_" else ord(" ") for b in range(128)
) + bytes(range(128, 256))


class _Unaccented(dict[int, str]):
    """A str.translate table giving each character its compatibility decomposition (NFKD)
    without the combining marks it splits off (those of the Basic Multilingual Plane, where the
    marks of news text live), filled in as characters are met.

    Per character, since decomposing is per character: NFKD only reorders the marks it makes,
    and they all go. Through a table that holds every character met, translating costs a
    lookup each; a table of the marks alone made str.translate raise and catch a KeyError for
    every other character (issue 5).
    """

    _MOST = 1 << 16  # distinct characters remembered; others are worked out each time

    def __missing__(self, code: int) -> str:
        bare = "".join(
            c
            for c in unicodedata.normalize("NFKD", chr(code))
            if not (ord(c) < 0x10000 and unicodedata.combining(c))
        )
        if len(self) < self._MOST:
            self[code] = bare
        return bare


_UNACCENTED = _Unaccented()


def fold(text: str) -> str:
    """Text for matching: accents removed, case folded, every run of non-word characters one
    space (so "Sky  Group" and "Sky\nGroup" read alike)."""
    if not text.isascii():  # most news text is; only the rest pays for decomposing
        text = text.translate(_UNACCENTED)
        if not text.isascii():
            return " ".join(_WORD.findall(text.casefold()))
    # The same words as the pattern finds, by byte translation and split (three times faster).
    return b" ".join(text.encode("ascii").translate(_ASCII_FOLD).split()).decode("ascii")


def occurs(term: str, folded_text: str) -> bool:
    """Whether a term occurs on word boundaries in folded text: on folded text words are
    separated by single spaces, so that is " term " within " text "."""
    folded_term = fold(term)
    return bool(folded_term) and f" {folded_term} " in f" {folded_text} "


def fold_texts(texts: Iterable[str]) -> str:
    """Several texts (title, summary, content) folded into one, with a separator that no
    term can match across."""
    return " | ".join(fold(text) for text in texts)


@dataclass(frozen=True)
class Match:
    """Why an article belongs to a storyline: the terms that were found."""

    all_terms: tuple[str, ...]
    any_terms: tuple[str, ...]

    @property
    def terms(self) -> tuple[str, ...]:
        return self.all_terms + self.any_terms


@dataclass(frozen=True)
class _Compiled:
    """Rules with their terms folded and padded once: (term, " folded term ")."""

    all: tuple[tuple[str, str], ...]
    any: tuple[tuple[str, str], ...]
    none: tuple[str, ...]


@lru_cache(maxsize=256)
def _compile(rules: StorylineRules) -> _Compiled:
    def padded(terms: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
        return tuple((term, f" {fold(term)} ") for term in terms if fold(term))

    return _Compiled(padded(rules.all), padded(rules.any), tuple(p for _, p in padded(rules.none)))


def match_folded(rules: StorylineRules, folded: str) -> Match | None:
    """As `match`, on text already folded by `fold_texts`."""
    return _decide(rules, _compile(rules), f" {folded} ")


class Matcher:
    """Many storylines' rules matched against one folded text at once, with the same results
    as `match_folded` for each.

    Each distinct term is looked for once per text, however many storylines name it, and only
    the storylines that one of their terms could admit are then decided: most articles contain
    no storyline's term, and cost one substring search per term rather than a rule check per
    storyline (issue #5).
    """

    def __init__(self, rules: Mapping[str, StorylineRules]) -> None:
        self._rules = {storyline: (r, _compile(r)) for storyline, r in sorted(rules.items())}
        triggers: dict[str, list[str]] = {}
        unconditional = []
        for storyline, (r, compiled) in self._rules.items():
            needed = compiled.all or (compiled.any if r.any else ())
            if not needed:
                unconditional.append(storyline)  # no term required: only `none` can refuse
            for _, padded in needed:
                triggers.setdefault(padded, []).append(storyline)
        # A term occurs only where its first word does: terms by first word, so that a text's
        # words (a set built in C) say which terms are worth looking for.
        self._by_first_word: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
        for padded, names in triggers.items():
            first = padded.split(maxsplit=1)[0]
            self._by_first_word.setdefault(first, []).append((padded, tuple(names)))
        self._unconditional = tuple(unconditional)

    def matches(self, folded: str) -> dict[str, Match]:
        """The storylines whose rules the folded text (from `fold_texts`) matches, with why."""
        text = f" {folded} "
        candidates = set(self._unconditional)
        for word in self._by_first_word.keys() & folded.split():
            for padded, storylines in self._by_first_word[word]:
                if padded in text:
                    candidates.update(storylines)
        found = {}
        for storyline in sorted(candidates):
            rules, compiled = self._rules[storyline]
            evidence = _decide(rules, compiled, text)
            if evidence is not None:
                found[storyline] = evidence
        return found


def _decide(rules: StorylineRules, compiled: _Compiled, text: str) -> Match | None:
    if any(term in text for term in compiled.none):
        return None
    if not all(term in text for _, term in compiled.all):
        return None
    found_any = tuple(term for term, padded in compiled.any if padded in text)
    if rules.any and not found_any:
        return None
    return Match(tuple(term for term, _ in compiled.all), found_any)


def match(rules: StorylineRules, texts: Iterable[str]) -> Match | None:
    """The evidence that the texts match the rules, or None."""
    return match_folded(rules, fold_texts(texts))
