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
def _pattern(term: str) -> re.Pattern[str]:
    # On folded text words are separated by single spaces, so a phrase is its words joined by
    # one space, bounded by the start, the end or a space on each side.
    return re.compile(rf"(?:^| ){re.escape(fold(term))}(?: |$)")


def occurs(term: str, folded_text: str) -> bool:
    folded_term = fold(term)
    return bool(folded_term) and bool(_pattern(term).search(folded_text))


@dataclass(frozen=True)
class Match:
    """Why an article belongs to a storyline: the terms that were found."""

    all_terms: tuple[str, ...]
    any_terms: tuple[str, ...]


def match(rules: StorylineRules, texts: Iterable[str]) -> Match | None:
    """The evidence that the texts match the rules, or None."""
    folded = " | ".join(fold(text) for text in texts)
    if any(occurs(term, folded) for term in rules.none):
        return None
    if not all(occurs(term, folded) for term in rules.all):
        return None
    found_any = tuple(term for term in rules.any if occurs(term, folded))
    if rules.any and not found_any:
        return None
    return Match(tuple(rules.all), found_any)
