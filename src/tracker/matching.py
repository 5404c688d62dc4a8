"""Storyline rules applied to an article's text (issue #4): pure functions.

A term is a word or phrase matched on word boundaries, ignoring case and accents: "Nicolás"
matches "Nicolas", "Sky Group" does not match "SkyGroup" or "sky-high". An article matches a
storyline when every `all` term occurs, at least one `any` term occurs (when `any` is given)
and no `none` term occurs, in its title, summary or content.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from tracker.config import StorylineRules


def fold(text: str) -> str:
    """Text for matching: accents removed, case folded, every run of non-word characters one
    space (so "Sky  Group" and "Sky\\nGroup" read alike)."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.findall(r"\w+", bare.casefold()))


@lru_cache(maxsize=4096)
def _pattern(folded_term: str) -> re.Pattern[str]:
    # On folded text words are separated by single spaces, so a phrase is its words joined by
    # one space, bounded by the start, the end or a space on each side.
    return re.compile(rf"(?:^| ){re.escape(folded_term)}(?: |$)")


def occurs(term: str, folded_text: str) -> bool:
    folded_term = fold(term)
    return bool(folded_term) and bool(_pattern(folded_term).search(folded_text))


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
    all: tuple[tuple[str, re.Pattern[str]], ...]
    any: tuple[tuple[str, re.Pattern[str]], ...]
    none: tuple[re.Pattern[str], ...]


@lru_cache(maxsize=256)
def _compile(rules: StorylineRules) -> _Compiled:
    def patterns(terms: tuple[str, ...]) -> tuple[tuple[str, re.Pattern[str]], ...]:
        return tuple((term, _pattern(fold(term))) for term in terms if fold(term))

    return _Compiled(
        patterns(rules.all), patterns(rules.any), tuple(p for _, p in patterns(rules.none))
    )


def match_folded(rules: StorylineRules, folded: str) -> Match | None:
    """As `match`, on text already folded by `fold_texts`."""
    compiled = _compile(rules)
    if any(pattern.search(folded) for pattern in compiled.none):
        return None
    if not all(pattern.search(folded) for _, pattern in compiled.all):
        return None
    found_any = tuple(term for term, pattern in compiled.any if pattern.search(folded))
    if rules.any and not found_any:
        return None
    return Match(tuple(term for term, _ in compiled.all), found_any)


def match(rules: StorylineRules, texts: Iterable[str]) -> Match | None:
    """The evidence that the texts match the rules, or None."""
    return match_folded(rules, fold_texts(texts))
