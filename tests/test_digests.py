"""Storyline digests (issue 5): `tracker story` reads a storyline's figure changes and names
from one row made after the views changed, not from every member's rows, and only while that
row still holds: the answer is always what summing the members gives, on both databases.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import sqlalchemy as sa
from histories import ESSEQUIBO, REWARD, SKY, RandomHistory, append, published, revised

from tracker import digests
from tracker.events.storylines import (
    ArticleExcluded,
    ArticleIncluded,
    StorylineDefined,
    StorylineRemoved,
)
from tracker.projection import catch_up
from tracker.reading import read_views
from tracker.rebuild import replay
from tracker.service import Tracker
from tracker.settings import Settings
from tracker.stories import EntityCount, FigureChange, entity_counts, figure_changes
from tracker.views import BY_NAME, PROJECTORS

STORY_VIEWS = [BY_NAME[name] for name in ("feeds", "storylines", "articles", "entities", "figures")]


@pytest.fixture
def tracker(settings: Settings) -> Iterator[Tracker]:
    with Tracker(settings) as opened:
        yield opened


def summed(tracker: Tracker, storyline_id: str) -> tuple[list[FigureChange], list[EntityCount]]:
    """The storyline's figure changes and names summed from its members' rows, as `tracker
    story` did before digests."""
    return read_views(
        tracker.store,
        STORY_VIEWS,
        lambda s: (figure_changes(s, storyline_id), entity_counts(s, storyline_id)),
    )


def shown(tracker: Tracker, storyline_id: str) -> tuple[list[FigureChange], list[EntityCount]]:
    story = tracker.story(storyline_id, newest=4)
    return list(story.figure_changes), list(story.entities)


def extract_tables_read(tracker: Tracker, storyline_id: str) -> set[str]:
    """Which of the figures and entities views `tracker story` read."""
    statements: list[str] = []

    def grab(*args: Any) -> None:
        statements.append(args[2])

    engine = tracker.store.engine
    sa.event.listen(engine, "before_cursor_execute", grab)
    try:
        tracker.story(storyline_id, newest=4)
    finally:
        sa.event.remove(engine, "before_cursor_execute", grab)
    return {name for name in ("figures__g", "entities__g") if any(name in s for s in statements)}


def test_story_reads_the_digest_which_equals_the_members_sums(tracker: Tracker) -> None:
    append(tracker.store, RandomHistory(seed=11, size=200).events)
    tracker.catch_up()  # and digests what changed
    for storyline_id in ("essequibo", "maduro-reward"):
        changes, names = summed(tracker, storyline_id)
        assert changes and names, "the history should give the storyline figures and names"
        assert shown(tracker, storyline_id) == (changes, names)
        assert extract_tables_read(tracker, storyline_id) == set()
    assert digests.refresh(tracker.store) == []  # nothing changed since


def _reward_history() -> list[Any]:
    return [
        REWARD,
        ESSEQUIBO,
        published(
            "article-a",
            "upi-top",
            "US raises reward for Maduro to $25 million",
            "The State Department said Nicolás Maduro faces charges.",
            day=1,
        ),
        published(
            "article-b",
            "thehill-news",
            "Venezuela presses its Essequibo claim",
            "Guyana rejects the claim to the Essequibo.",
            day=2,
        ),
    ]


# Each change the digest of maduro-reward must notice, and what it changes there.
CHANGES: dict[str, list[Any]] = {
    "a member revised": [
        revised(
            "article-a",
            "upi-top",
            "US doubles reward for Maduro to $50 million",
            "Pam Bondi said Nicolás Maduro faces charges.",
        )
    ],
    "an article joining": [
        published(
            "article-c",
            "miamiherald-local",
            "Reward for Maduro now $50 million",
            "Marco Rubio announced the reward for Maduro.",
            day=3,
        )
    ],
    "a member excluded": [ArticleExcluded("maduro-reward", "article-a")],
    "an article pinned": [ArticleIncluded("maduro-reward", "article-b")],
    "new rules": [
        StorylineDefined("maduro-reward", "Maduro and Essequibo", any=("Maduro", "Essequibo"))
    ],
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_digest_that_no_longer_holds_is_not_read(tracker: Tracker, change: str) -> None:
    append(tracker.store, _reward_history())
    tracker.catch_up()
    before = shown(tracker, "maduro-reward")
    append(tracker.store, CHANGES[change])
    catch_up(tracker.store, PROJECTORS)  # the views only: the digest now stands behind them
    after = summed(tracker, "maduro-reward")
    assert after != before, "the change should show in the storyline's figures or names"
    assert shown(tracker, "maduro-reward") == after
    assert extract_tables_read(tracker, "maduro-reward") == {"figures__g", "entities__g"}
    # Made again, it is read again; essequibo, which the change did not touch, is not remade.
    assert digests.refresh(tracker.store) == ["maduro-reward"]
    assert shown(tracker, "maduro-reward") == after
    assert extract_tables_read(tracker, "maduro-reward") == set()


@pytest.mark.parametrize("rebuilt", [["figures"], ["entities"], ["storylines"]])
def test_a_digest_made_from_views_since_rebuilt_is_not_read(
    tracker: Tracker, rebuilt: Sequence[str]
) -> None:
    append(tracker.store, _reward_history())
    tracker.catch_up()
    expected = summed(tracker, "maduro-reward")
    replay(tracker.store, [BY_NAME[name] for name in rebuilt])  # new tables, no digests made
    assert extract_tables_read(tracker, "maduro-reward") == {"figures__g", "entities__g"}
    assert shown(tracker, "maduro-reward") == expected
    assert digests.refresh(tracker.store) == ["essequibo", "maduro-reward"]
    assert extract_tables_read(tracker, "maduro-reward") == set()
    assert shown(tracker, "maduro-reward") == expected


def test_replay_and_catch_up_leave_every_storyline_digested(tracker: Tracker) -> None:
    append(tracker.store, [*_reward_history(), SKY])
    tracker.replay()
    assert digests.refresh(tracker.store) == []
    append(tracker.store, [published("article-s", "upi-top", "Sky Group USA founder jailed")])
    tracker.catch_up()
    assert digests.refresh(tracker.store) == []
    assert extract_tables_read(tracker, "sky-group") == set()


def test_a_digest_is_not_read_while_the_storylines_view_stands_behind_the_others(
    tracker: Tracker,
) -> None:
    append(tracker.store, _reward_history())
    tracker.catch_up()
    append(tracker.store, CHANGES["a member revised"])
    # The figures and entities views move on; the storylines view, which would mark the change,
    # has not seen it (as while a replay of it runs).
    catch_up(tracker.store, [BY_NAME["entities"], BY_NAME["figures"]])
    assert digests.stale(tracker.store) is None
    expected = summed(tracker, "maduro-reward")
    assert shown(tracker, "maduro-reward") == expected
    assert extract_tables_read(tracker, "maduro-reward") == {"figures__g", "entities__g"}


def test_a_storyline_removed_and_defined_again_is_digested_afresh(tracker: Tracker) -> None:
    append(tracker.store, _reward_history())
    tracker.catch_up()
    append(tracker.store, [StorylineRemoved("maduro-reward"), *CHANGES["an article joining"]])
    tracker.catch_up()
    append(tracker.store, [REWARD])
    catch_up(tracker.store, PROJECTORS)
    expected = summed(tracker, "maduro-reward")
    assert shown(tracker, "maduro-reward") == expected
    assert digests.refresh(tracker.store) == ["maduro-reward"]
    assert shown(tracker, "maduro-reward") == expected
    assert extract_tables_read(tracker, "maduro-reward") == set()


def test_a_digest_of_another_digest_version_is_not_read(tracker: Tracker) -> None:
    append(tracker.store, _reward_history())
    tracker.catch_up()
    expected = summed(tracker, "maduro-reward")
    with tracker.store.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE storyline_digests__g1 SET version = 0")
    assert extract_tables_read(tracker, "maduro-reward") == {"figures__g", "entities__g"}
    assert digests.refresh(tracker.store) == ["essequibo", "maduro-reward"]
    assert shown(tracker, "maduro-reward") == expected


def test_views_at_different_positions_are_not_digested(tracker: Tracker) -> None:
    append(tracker.store, _reward_history())
    catch_up(tracker.store, PROJECTORS)
    append(tracker.store, [published("article-s", "upi-top", "Sky Group USA founder jailed")])
    catch_up(tracker.store, [BY_NAME["entities"]])  # ahead of the other two now
    assert digests.refresh(tracker.store) == []
    expected = summed(tracker, "maduro-reward")
    assert shown(tracker, "maduro-reward") == expected
