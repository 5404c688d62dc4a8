"""Storylines end to end on both databases: rules, curation, rule changes, time travel, and
what `tracker story`, `stories`, `article` and `status` show."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from helpers import run_tracker
from histories import ESSEQUIBO, REWARD, SKY, append, published, revised

from tracker.errors import UsageError
from tracker.events.storylines import StorylineDefined, StorylineRemoved
from tracker.service import Tracker
from tracker.settings import Settings
from tracker.stories import UnknownStoryline

STORY_KEYS = {
    "id",
    "title",
    "article_count",
    "first_seen",
    "last_updated",
    "sources",
    "summary",
    "figures",
    "figure_changes",
    "articles",
    "entities",
    "per_day",
    "rules",
    "position",
    "as_of",
}


def members(tracker: Tracker, storyline_id: str, **as_of: object) -> list[str]:
    return [a.id for a in tracker.story(storyline_id, **as_of).articles]  # type: ignore[arg-type]


@pytest.fixture
def tracker(settings: Settings) -> Tracker:
    with Tracker(settings) as opened:
        yield opened  # type: ignore[misc]


def test_rules_decide_membership_with_evidence(tracker: Tracker) -> None:
    append(
        tracker.store,
        [
            ESSEQUIBO,
            REWARD,
            SKY,
            published("article-a", "upi-top", "Maduro vows to recover the Essequibo", day=1),
            published("article-b", "upi-top", "US doubles reward for Nicolás Maduro", day=2),
            published("article-c", "upi-top", "Sky-high rents in Miami", day=3),
            published("article-d", "upi-top", "Maduro speaks on oil", "A bounty? No.", day=4),
            published("article-e", "upi-top", "SkyGroup Logistics expands", day=5),
        ],
    )
    tracker.catch_up()
    essequibo = tracker.story("essequibo")
    assert [(a.id, a.matched_by, a.terms) for a in essequibo.articles] == [
        ("article-a", "rules", ("Essequibo",))
    ]
    reward = tracker.story("maduro-reward")
    assert [(a.id, a.terms) for a in reward.articles] == [
        ("article-b", ("Maduro", "reward")),
        ("article-d", ("Maduro", "bounty")),
    ]
    assert tracker.story("sky-group").articles == ()


def test_curation_beats_the_rules_and_can_be_withdrawn(tracker: Tracker) -> None:
    append(
        tracker.store,
        [
            ESSEQUIBO,
            published("article-a", "upi-top", "Essequibo claim grows", day=1),
            published("article-b", "upi-top", "Guyana's election nears", day=2),
        ],
    )
    tracker.catch_up()
    lines = tracker.curate("essequibo", include=["article-b"], exclude=["article-a"])
    assert lines == ["article-b: included", "article-a: excluded"]
    # Saying it again records nothing.
    again = tracker.curate("essequibo", include=["https://news.example/article-b"])
    assert again == ["article-b: already included, nothing to record"]
    tracker.catch_up()
    story = tracker.story("essequibo")
    assert [(a.id, a.matched_by) for a in story.articles] == [("article-b", "curation")]
    # A later edit that would match the rules does not undo an exclusion.
    append(tracker.store, [revised("article-a", "upi-top", "Essequibo claim grows again")])
    tracker.catch_up()
    assert members(tracker, "essequibo") == ["article-b"]
    tracker.curate("essequibo", clear=["article-a", "article-b"])
    tracker.catch_up()
    assert members(tracker, "essequibo") == ["article-a"]
    kinds = [e.event_type for e in tracker.events(stream_id="curation-essequibo")]
    assert kinds == [
        "storyline.article_included",
        "storyline.article_excluded",
        "storyline.curation_cleared",
        "storyline.curation_cleared",
    ]


def test_curation_names_what_is_wrong(tracker: Tracker) -> None:
    append(tracker.store, [ESSEQUIBO, published("article-a", "upi-top", "Essequibo", day=1)])
    with pytest.raises(UnknownStoryline, match=r"no storyline 'nope' \(storylines: essequibo\)"):
        tracker.curate("nope", include=["article-a"])
    with pytest.raises(UsageError, match="no article 'article-zzz' in the log"):
        tracker.curate("essequibo", include=["article-zzz"])
    with pytest.raises(UsageError, match="named twice"):
        tracker.curate("essequibo", include=["article-a"], exclude=["article-a"])
    assert list(tracker.events(stream_id="curation-essequibo")) == []


def test_new_rules_rematch_everything_and_a_removed_storyline_goes(tracker: Tracker) -> None:
    append(
        tracker.store,
        [
            ESSEQUIBO,
            SKY,
            published("article-a", "upi-top", "Essequibo claim grows", day=1),
            published("article-b", "upi-top", "Guyana's election nears", day=2),
        ],
    )
    tracker.catch_up()
    assert members(tracker, "essequibo") == ["article-a"]
    append(tracker.store, [StorylineDefined("essequibo", "Essequibo", any=("Guyana",))])
    tracker.catch_up()
    assert members(tracker, "essequibo") == ["article-b"]
    append(tracker.store, [StorylineRemoved("sky-group")])
    tracker.catch_up()
    assert [s.id for s in tracker.stories()] == ["essequibo"]
    with pytest.raises(
        UnknownStoryline,
        match=r"no storyline 'sky-group' since .*, when it left feeds.yaml \(storylines: essequibo",
    ):
        tracker.story("sky-group")


def test_time_travel_applies_only_what_the_log_held_then(tracker: Tracker) -> None:
    store = tracker.store
    append(store, [ESSEQUIBO, published("article-a", "upi-top", "Essequibo claim grows", day=1)])
    first = store.head_position()
    append(store, [revised("article-a", "upi-top", "Essequibo claim grows: troops move")])
    revised_at = store.head_position()
    append(store, [published("article-b", "upi-top", "Guyana's election nears", day=2)])
    append(store, [StorylineDefined("essequibo", "Essequibo", any=("Essequibo", "Guyana"))])
    tracker.catch_up()

    now = tracker.story("essequibo")
    assert [(a.id, a.title, a.revisions) for a in now.articles] == [
        ("article-a", "Essequibo claim grows: troops move", 1),
        ("article-b", "Guyana's election nears", 0),
    ]
    # Before the revision, the new article and the new rules: the article as first seen.
    then = tracker.story("essequibo", as_of_position=first)
    assert [(a.id, a.title, a.revisions) for a in then.articles] == [
        ("article-a", "Essequibo claim grows", 0)
    ]
    assert then.rules == {
        "all": [],
        "any": ["Essequibo", "Esequibo", "Guayana Esequiba"],
        "none": [],
    }
    # After the new article but before the rules that take it in.
    before_rules = tracker.story("essequibo", as_of_position=store.head_position() - 1)
    assert [a.id for a in before_rules.articles] == ["article-a"]
    # By time: the moment the revision was recorded.
    moment = next(e for e in store.read_all() if e.position == revised_at).recorded_at
    by_time = tracker.story("essequibo", as_of=moment)
    assert by_time.articles[0].revisions == 1 and len(by_time.articles) == 1
    assert by_time.as_json_object()["as_of"] == moment.isoformat()
    # Before anything was recorded: the user mixed up recording and publication times.
    with pytest.raises(UsageError, match="is before the log begins .*not when the news was"):
        tracker.story("essequibo", as_of=moment - timedelta(days=1))
    with pytest.raises(UsageError, match="position 0 is before the log begins"):
        tracker.story("essequibo", as_of_position=0)
    shown = tracker.story("essequibo", as_of_position=first)
    assert shown.past and shown.position == first


def test_the_story_json_has_the_documented_keys(tracker: Tracker) -> None:
    append(
        tracker.store,
        [
            REWARD,
            published(
                "article-a",
                "thehill-news",
                "US raises reward for Maduro to $25 million",
                "The State Department raised the reward for information leading to the arrest "
                "of President Nicolás Maduro to $25 million, up from $15 million.",
                day=10,
            ),
            published(
                "article-b",
                "upi-top",
                "US doubles reward for Maduro to $50 million",
                "Attorney General Pam Bondi said the reward for Nicolás Maduro is now $50 "
                "million, the highest ever offered for a head of state.",
                day=200,
            ),
        ],
    )
    tracker.catch_up()
    found = tracker.story("maduro-reward").as_json_object()
    assert set(found) == STORY_KEYS
    assert found["article_count"] == 2
    assert found["first_seen"] == "2025-01-11T00:00:00+00:00"
    assert [s["id"] for s in found["sources"]] == ["thehill-news", "upi-top"]
    reward = next(c for c in found["figure_changes"] if c["label"] == "reward")
    assert [v["text"] for v in reward["values"]] == ["$15 million", "$25 million", "$50 million"]
    assert {"kind", "value", "unit", "text", "article_id", "source", "published_at"} <= set(
        found["figures"][0]
    )
    assert found["figures"][0]["value"] == 25_000_000
    assert found["articles"][0]["matched"] == {
        "by": "rules",
        "terms": ["Maduro", "reward"],
        "curation_position": None,
    }
    names = {(e["name"], e["kind"]) for e in found["entities"]}
    assert ("Nicolás Maduro", "person") in names and ("Pam Bondi", "person") in names
    assert found["summary"] and found["summary"][0]["article_id"] in {"article-a", "article-b"}


def test_story_on_the_command_line(settings: Settings, database_url: str) -> None:
    with Tracker(settings) as tracker:
        append(
            tracker.store,
            [ESSEQUIBO, SKY, published("article-a", "upi-top", "Essequibo claim grows", day=1)],
        )
        tracker.catch_up()
    url = ["--database-url", database_url]
    shown = run_tracker("story", "essequibo", *url)
    assert shown.returncode == 0, shown.stderr
    assert "Essequibo dispute (essequibo)" in shown.stdout
    assert "Essequibo claim grows" in shown.stdout
    as_json = run_tracker("story", "essequibo", "--json", *url)
    assert set(json.loads(as_json.stdout)) == STORY_KEYS
    unknown = run_tracker("story", "nope", *url)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "error: no storyline 'nope' (storylines: essequibo, sky-group)"
    bad_time = run_tracker("story", "essequibo", "--as-of", "last tuesday", *url)
    assert bad_time.returncode == 2 and "is not an ISO 8601 date or time" in bad_time.stderr
    past = run_tracker("story", "essequibo", "--as-of", "2020-01-01", "--json", *url)
    assert past.returncode == 2 and "is before the log begins" in past.stderr
    beyond = run_tracker("story", "essequibo", "--as-of-position", "999999", *url)
    assert beyond.returncode == 0
    assert "note: position 999999 is past the end of the log (3)" in beyond.stderr
    both = run_tracker("story", "essequibo", "--as-of", "2020-01-01", "--include", "x", *url)
    assert both.returncode == 2 and "without --as-of" in both.stderr
    listed = run_tracker("stories", "--json", *url)
    assert [s["id"] for s in json.loads(listed.stdout)] == ["essequibo", "sky-group"]
    pinned = run_tracker("story", "sky-group", "--include", "article-a", "--json", *url)
    assert pinned.returncode == 0, pinned.stderr
    assert json.loads(pinned.stdout)["articles"][0]["matched"]["by"] == "curation"


def test_story_says_when_the_views_lag_behind_the_log(
    settings: Settings, database_url: str
) -> None:
    with Tracker(settings) as tracker:
        append(tracker.store, [ESSEQUIBO])
        tracker.catch_up()
        append(tracker.store, [published("article-a", "upi-top", "Essequibo", day=1)])
    shown = run_tracker("story", "essequibo", "--database-url", database_url)
    assert shown.returncode == 0
    assert "note: the views are 1 events behind the log" in shown.stderr
    status = run_tracker("status", "--json", "--database-url", database_url)
    found = json.loads(status.stdout)
    assert {p["name"]: p["lag"] for p in found["projections"]} == {
        "articles": 1,
        "entities": 1,
        "feeds": 1,
        "figures": 1,
        "storylines": 1,
    }


def test_a_database_whose_views_were_never_built_says_what_to_run(
    settings: Settings, database_url: str
) -> None:
    # An empty log simply has no storylines yet.
    empty = run_tracker("story", "essequibo", "--database-url", database_url)
    assert empty.returncode == 2
    assert empty.stderr.strip() == "error: no storyline 'essequibo' (storylines: none yet)"
    assert run_tracker("stories", "--json", "--database-url", database_url).stdout.strip() == "[]"
    # Events the views never saw (a log from before them): the message says what to run.
    with Tracker(settings) as tracker:
        append(tracker.store, [ESSEQUIBO])
    shown = run_tracker("story", "essequibo", "--database-url", database_url)
    assert shown.returncode == 1
    assert "has not been built yet: run `tracker replay`" in shown.stderr
    assert len(shown.stderr.strip().splitlines()) == 1
    assert run_tracker("replay", "--database-url", database_url).returncode == 0
    assert run_tracker("story", "essequibo", "--database-url", database_url).returncode == 0


def test_article_shows_its_versions_with_a_word_diff(settings: Settings, database_url: str) -> None:
    with Tracker(settings) as tracker:
        append(
            tracker.store,
            [
                published("article-a", "thehill-news", "State Department doubles reward", day=1),
                revised("article-a", "thehill-news", "Bondi announces doubled reward"),
            ],
        )
        tracker.catch_up()
        history = tracker.article("https://news.example/article-a")
        # The URL as a user copies it: another scheme, a trailing slash, tracking noise.
        for copy in ("http://news.example/article-a/", "https://news.example/article-a?utm_x=1"):
            assert tracker.article(copy).article_id == "article-a"
    assert [v.number for v in history.versions] == [1, 2]
    shown = run_tracker("article", "article-a", "--database-url", database_url)
    assert shown.returncode == 0, shown.stderr
    assert "title: [-State Department doubles-] {+Bondi announces doubled+} reward" in shown.stdout
    as_json = json.loads(
        run_tracker("article", "article-a", "--json", "--database-url", database_url).stdout
    )
    assert as_json["versions"][1]["changed"] == ["title", "summary"]
    missing = run_tracker("article", "https://nowhere.example/x", "--database-url", database_url)
    assert missing.returncode == 2 and "no article" in missing.stderr
