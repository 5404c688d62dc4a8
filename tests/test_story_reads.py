"""What `tracker story` and `stories` read, on both databases (issue 5): the database's
grouped answers and the per-feed counts the storylines view keeps equal what grouping every
member and every figure in Python gives; the terminal's story, read with its newest articles
only, equals the complete one where they overlap; and no query of theirs scans a view.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from helpers import run_tracker
from histories import ESSEQUIBO, REWARD, RandomHistory, append, published, revised
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracker.amounts import format_value
from tracker.events.storylines import ArticleIncluded, StorylineDefined, StorylineRemoved
from tracker.names import PERSON
from tracker.service import Tracker
from tracker.settings import Settings
from tracker.stories import (
    Figure,
    FigureChange,
    FigureStep,
    Source,
    Story,
    _merge_surnames,
)

NEWEST = 4  # fewer than the histories' storylines have, so that the terminal's story is cut


@pytest.fixture
def tracker(settings: Settings) -> Tracker:
    with Tracker(settings) as opened:
        yield opened  # type: ignore[misc]


# -- the grouping of every member and figure in Python, as `tracker story` did it before ------


def sources_of(story: Story) -> tuple[Source, ...]:
    counts = Counter(article.source for article in story.articles)
    titles = {source.id: source.title for source in story.sources}
    return tuple(
        Source(feed_id, titles[feed_id], count)
        for feed_id, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    )


def figure_changes_of(figures: Sequence[Figure]) -> tuple[FigureChange, ...]:
    groups: dict[tuple[str, str, str], list[Figure]] = {}
    ordered = sorted(figures, key=lambda f: (f.published_at, f.article_id, not f.earlier))
    for figure in ordered:
        if figure.label:
            groups.setdefault((figure.kind, figure.label, figure.unit), []).append(figure)
    changes = []
    for (kind, label, unit), members in groups.items():
        steps: dict[float, FigureStep] = {}
        for figure in members:
            if figure.value not in steps:
                text = format_value(kind, Decimal(repr(figure.value)), unit)
                steps[figure.value] = FigureStep(
                    figure.value, text, figure.published_at, figure.source, figure.article_id
                )
        changes.append(FigureChange(kind, label, unit, len(members), tuple(steps.values())))
    changes.sort(key=lambda c: (len(c.steps) < 2, -c.mentions, c.kind, c.label, c.unit))
    return tuple(changes)


def check_story(tracker: Tracker, storyline_id: str) -> None:
    """The complete story against the Python grouping of its own lists, and the terminal's
    story against the complete one."""
    full = tracker.story(storyline_id)
    articles = full.articles
    assert full.article_count == len(articles)
    assert full.first_seen == min((a.published_at for a in articles), default=None)
    assert full.last_published == max((a.published_at for a in articles), default=None)
    assert full.last_updated == max(
        [a.published_at for a in articles] + [a.updated_at for a in articles if a.revisions],
        default=None,
    )
    assert full.sources == sources_of(full)
    assert full.figure_changes == figure_changes_of(full.figures)
    assert {f.article_id for f in full.figures} <= {a.id for a in articles}
    assert sum(count for _, count in full.per_day) == len(articles)
    short = tracker.story(storyline_id, newest=NEWEST)
    assert not short.complete and short.figures == () and short.per_day == ()
    assert short.articles == articles[-NEWEST:]
    same = ("article_count", "first_seen", "last_published", "last_updated", "sources")
    for name in (*same, "summary", "figure_changes", "entities", "title", "rules", "position"):
        assert getattr(short, name) == getattr(full, name), name
    with pytest.raises(ValueError, match="newest articles only"):
        short.as_json_object()


def check_stories(tracker: Tracker) -> None:
    listed = tracker.stories()
    for summary in listed:
        story = tracker.story(summary.id)
        assert (summary.title, summary.article_count, summary.sources, summary.last_updated) == (
            story.title,
            story.article_count,
            story.sources,
            story.last_updated,
        )


@pytest.mark.parametrize("seed", [2, 5, 9])
def test_grouped_reads_equal_grouping_every_member(tracker: Tracker, seed: int) -> None:
    history = RandomHistory(seed=seed, size=160)
    append(tracker.store, history.events)
    tracker.catch_up()
    for storyline_id in ("essequibo", "maduro-reward", "sky-group"):
        check_story(tracker, storyline_id)
    check_stories(tracker)
    # A storyline removed and defined again: its counts go with its members, and come back.
    append(tracker.store, [StorylineRemoved("essequibo")])
    tracker.catch_up()
    assert "essequibo" not in [s.id for s in tracker.stories()]
    append(tracker.store, [ESSEQUIBO])
    tracker.catch_up()
    check_story(tracker, "essequibo")
    check_stories(tracker)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.integers(0, 10_000), batch=st.integers(1, 40))
def test_grouped_reads_equal_grouping_every_member_whatever_the_history(
    tmp_path_factory: pytest.TempPathFactory, seed: int, batch: int
) -> None:
    url = f"sqlite:///{tmp_path_factory.mktemp('reads') / 't.db'}"
    with Tracker(Settings(url, tmp_path_factory.getbasetemp() / "feeds.yaml")) as tracker:
        events = RandomHistory(seed=seed, size=120).events
        for start in range(0, len(events), batch):  # counts kept across catch-ups
            append(tracker.store, events[start : start + batch])
            tracker.catch_up()
        for storyline_id in ("essequibo", "maduro-reward"):
            check_story(tracker, storyline_id)
        check_stories(tracker)


def test_a_member_never_seen_published_is_neither_shown_nor_counted(tracker: Tracker) -> None:
    append(
        tracker.store,
        [
            REWARD,
            published("article-a", "upi-top", "US doubles reward for Maduro", day=3),
            # Pinned before its first sight reached the log, then seen only revised.
            ArticleIncluded("maduro-reward", "article-x"),
            revised("article-x", "thehill-news", "Maduro reward, revised"),
        ],
    )
    tracker.catch_up()
    story = tracker.story("maduro-reward")
    assert [a.id for a in story.articles] == ["article-a"] and story.article_count == 1
    assert [(s.id, s.count) for s in story.sources] == [("upi-top", 1)]
    assert story.last_updated == story.last_published
    # Its publication arrives: now it is shown and counted, under the feed it was seen in.
    append(
        tracker.store,
        [
            published("article-x", "thehill-news", "Maduro reward", day=5),
            revised("article-x", "thehill-news", "Maduro reward, now $50 million"),
        ],
    )
    tracker.catch_up()
    check_story(tracker, "maduro-reward")
    story = tracker.story("maduro-reward")
    assert [(a.id, a.revisions) for a in story.articles] == [("article-a", 0), ("article-x", 1)]
    assert [(s.id, s.count) for s in story.sources] == [("thehill-news", 1), ("upi-top", 1)]
    assert story.last_updated == story.articles[-1].updated_at > story.last_published


def test_the_terminal_shows_the_newest_articles_and_json_every_one(
    settings: Settings, database_url: str
) -> None:
    with Tracker(settings) as tracker:
        append(
            tracker.store,
            [ESSEQUIBO]
            + [
                published(f"article-{n:02d}", "upi-top", f"Essequibo, day {n}", day=n)
                for n in range(45)
            ],
        )
        tracker.catch_up()
    shown = run_tracker("story", "essequibo", "--database-url", database_url)
    assert shown.returncode == 0, shown.stderr
    assert "45 articles published" in shown.stdout
    assert "... 5 earlier articles" in shown.stdout
    assert "Essequibo, day 5\n" in shown.stdout and "Essequibo, day 4\n" not in shown.stdout
    printed = run_tracker("story", "essequibo", "--json", "--database-url", database_url)
    assert printed.returncode == 0, printed.stderr
    assert '"article_count": 45' in printed.stdout
    assert printed.stdout.count('"matched": ') == 45


def test_no_story_query_scans_a_view(tracker: Tracker) -> None:
    """Every query of `story` and `stories` finds its rows through an index (SQLite's plan
    says SEARCH), so none costs more as the log grows; only the short list of storylines is
    read whole."""
    if tracker.store.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL plans tables this small by scanning them, whatever the indexes")
    append(tracker.store, RandomHistory(seed=4, size=80).events)
    tracker.catch_up()
    statements: list[tuple[str, Any]] = []

    def grab(*args: Any) -> None:
        statements.append((args[2], args[3]))

    engine = tracker.store.engine
    sa.event.listen(engine, "before_cursor_execute", grab)
    try:
        tracker.story("essequibo", newest=NEWEST)
        tracker.stories()
    finally:
        sa.event.remove(engine, "before_cursor_execute", grab)
    scans = []
    with engine.connect() as connection:
        for statement, parameters in statements:
            if "__g" not in statement:
                continue  # the projections' checkpoints and the log's head, not the views
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            scans += [
                line
                for *_, line in plan
                if line.startswith("SCAN ")
                and not line.startswith(("SCAN CONSTANT ROW", "SCAN (subquery", "SCAN anon_"))
                and not line.startswith("SCAN storylines__g")
            ]
    assert scans == []


@given(
    st.lists(
        st.lists(st.sampled_from(["ann", "bo", "cy", "di", "ed"]), min_size=1, max_size=4),
        max_size=25,
    )
)
def test_surnames_join_the_one_fuller_name_as_comparing_every_pair_did(
    names: list[list[str]],
) -> None:
    def counts() -> dict[tuple[str, str], Counter[str]]:
        found: dict[tuple[str, str], Counter[str]] = {}
        for n, words in enumerate(names):
            found.setdefault((" ".join(words), PERSON), Counter())[f"{words}"] += n + 1
        found[("ann", "place")] = Counter(ann=1)  # only people are merged
        return found

    expected = counts()
    people = sorted(k for k, kind in expected if kind == PERSON)
    for short in people:
        words = short.split()
        longer = [
            p for p in people if len(p.split()) > len(words) and p.split()[-len(words) :] == words
        ]
        if len(longer) == 1 and (longer[0], PERSON) in expected and (short, PERSON) in expected:
            expected[(longer[0], PERSON)].update(expected.pop((short, PERSON)))
    merged = counts()
    _merge_surnames(merged)
    assert merged == expected


def test_a_rules_change_recounts_the_sources(tracker: Tracker) -> None:
    append(
        tracker.store,
        [
            ESSEQUIBO,
            published("article-a", "upi-top", "Essequibo claim grows", day=1),
            published("article-b", "thehill-news", "Guyana's election nears", day=2),
            published("article-c", "thehill-news", "Guyana's oil output", day=3),
        ],
    )
    tracker.catch_up()
    assert [(s.id, s.count) for s in tracker.story("essequibo").sources] == [("upi-top", 1)]
    append(tracker.store, [StorylineDefined("essequibo", "Essequibo", any=("Guyana",))])
    tracker.catch_up()
    check_story(tracker, "essequibo")
    assert [(s.id, s.count) for s in tracker.story("essequibo").sources] == [("thehill-news", 2)]


def test_figure_changes_in_the_order_first_reported(tracker: Tracker) -> None:
    raised = (
        "The State Department raised the reward for Nicolás Maduro to $25 million, up from "
        "$15 million."
    )
    append(
        tracker.store,
        [
            REWARD,
            published("article-b", "upi-top", "Maduro reward doubled", raised, day=20),
            published("article-a", "thehill-news", "Maduro reward", raised, day=10),
            published(
                "article-c",
                "upi-top",
                "US doubles reward for Maduro to $50 million",
                "The reward for Nicolás Maduro is now $50 million, up from $25 million.",
                day=30,
            ),
        ],
    )
    tracker.catch_up()
    check_story(tracker, "maduro-reward")
    reward = next(c for c in tracker.story("maduro-reward").figure_changes if c.label == "reward")
    assert [(s.text, s.article_id) for s in reward.steps] == [
        ("$15 million", "article-a"),  # named as the earlier value: first in its article
        ("$25 million", "article-a"),
        ("$50 million", "article-c"),
    ]
    assert reward.mentions == 7  # the title says $50 million too
