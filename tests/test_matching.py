"""Storyline rules: words and phrases on word boundaries, ignoring case and accents."""

from __future__ import annotations

import pytest

from tracker.config import StorylineRules
from tracker.matching import fold, match

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
