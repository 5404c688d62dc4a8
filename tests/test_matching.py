"""Storyline rules: words and phrases on word boundaries, ignoring case and accents."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker.config import StorylineRules
from tracker.matching import Matcher, fold, fold_texts, match, match_folded

ESSEQUIBO = StorylineRules(any=("Essequibo", "Esequibo", "Guayana Esequiba"))
MADURO_REWARD = StorylineRules(all=("Maduro",), any=("reward", "bounty", "recompensa"))
SKY_GROUP = StorylineRules(any=("Sky Group",))


def test_fold() -> None:
    assert fold("Nicolás  MADURO,\nrecompensa!") == "nicolas maduro recompensa"


@pytest.mark.parametrize(
    ("rules", "text", "expected"),
    [
        (MADURO_REWARD, "US doubles reward for Nicolás Maduro to $50 million", True),
        (MADURO_REWARD, "EE.UU. sube la recompensa por MADURO", True),
        (MADURO_REWARD, "Maduro intensifies rhetoric over the Essequibo", False),
        (MADURO_REWARD, "Rewards for Maduro", False),  # a word, not a prefix
        (SKY_GROUP, "Investors in Sky Group USA filled the court", True),
        (SKY_GROUP, "sky\ngroup usa", True),
        (SKY_GROUP, "SkyGroup shares", False),
        (SKY_GROUP, "sky-high prices for the group", False),
        (ESSEQUIBO, "La Guayana Esequiba ante la Corte", True),
        (ESSEQUIBO, "Guyana's Essequibo region", True),
        (ESSEQUIBO, "Guyana elections", False),
    ],
)
def test_storyline_rules(rules: StorylineRules, text: str, expected: bool) -> None:
    assert (match(rules, [text]) is not None) is expected


def test_none_terms_exclude_and_evidence_names_the_terms() -> None:
    rules = StorylineRules(all=("Maduro",), any=("reward", "bounty"), none=("baseball",))
    evidence = match(rules, ["Maduro bounty", "reward doubled"])
    assert evidence is not None and evidence.any_terms == ("reward", "bounty")
    assert match(rules, ["Maduro reward", "a baseball story"]) is None


def test_terms_do_not_match_across_title_and_summary() -> None:
    assert match(SKY_GROUP, ["Miami man sentenced in Sky", "Group of investors"]) is None


def _reference_fold(text: str) -> str:
    """fold() as first written: decompose the whole text, drop the marks of the Basic
    Multilingual Plane, fold case, keep the words."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not (ord(c) < 0x10000 and unicodedata.combining(c)))
    return " ".join(re.findall(r"\w+", bare.casefold()))


NEWSY = st.text(
    alphabet=st.sampled_from(
        [
            *"abcxyzABCXYZ0189_ -.,;'’\n\t\x0b\x1c|!$áÁçÇñÑüßſKİıﬁŉǄ½①ｆ한ℌ\u00a0",
            # Marks, some beyond the Basic Multilingual Plane, in orders NFKD rearranges.
            *"\u0301\u0327\u0345\u05b0\U0001d165\U0001d167\U0001e944",
        ]
    )
)


@given(st.one_of(NEWSY, st.text()))
def test_fold_is_its_definition(text: str) -> None:
    # The ASCII fast path and the general path both give what the definition gives.
    assert fold(text) == _reference_fold(text)


TERMS = ["Maduro", "reward", "bounty", "Sky Group", "Group", "Sky", "Essequibo", "Nicolás", "!!"]
WORDS = [*TERMS, "Group USA", "sky-high", "maduro's", "REWARD", "nicolas", "the", "|", "\n"]
RULES = st.builds(
    StorylineRules,
    all=st.lists(st.sampled_from(TERMS), max_size=2).map(tuple),
    any=st.lists(st.sampled_from(TERMS), max_size=3).map(tuple),
    none=st.lists(st.sampled_from(TERMS), max_size=2).map(tuple),
)


@given(
    rules=st.dictionaries(st.sampled_from("abcdefgh"), RULES, max_size=8),
    texts=st.lists(
        st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join), min_size=1, max_size=3
    ),
)
def test_one_matcher_for_many_storylines_finds_what_each_storylines_rules_find(
    rules: dict[str, StorylineRules], texts: list[str]
) -> None:
    folded = fold_texts(texts)
    expected = {}
    for storyline, storyline_rules in rules.items():
        found = match_folded(storyline_rules, folded)
        if found is not None:
            expected[storyline] = found
    assert Matcher(rules).matches(folded) == expected
