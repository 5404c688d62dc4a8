"""Typed events survive encoding, the store and decoding; old payloads are upcast on read."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracker.events import decode, encode, payload_of
from tracker.events.articles import ArticlePublished, ArticleRevised, ArticleSeenInFeed
from tracker.events.feeds import FeedFailing, FeedGone, FeedMoved, FeedRecovered
from tracker.eventstore import EventStore

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
names = st.text("abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=20)
strings = st.tuples(text, text) | st.tuples()
EVENTS = st.one_of(
    st.builds(
        ArticlePublished,
        article_id=names,
        feed_id=names,
        identity=st.sampled_from(["guid", "link", "content"]),
        guid=st.none() | text,
        link=st.none() | text,
        title=text,
        title_text=text,
        summary=text,
        summary_text=text,
        content=text,
        content_text=text,
        published=text,
        published_is_first_seen=st.booleans(),
        updated=st.none() | text,
        authors=strings,
        categories=strings,
        media=strings,
    ),
    st.builds(
        ArticleRevised,
        article_id=names,
        feed_id=names,
        changed=st.sampled_from([("title",), ("title", "link"), ("content",)]),
        link=st.none() | text,
        title=text,
        title_text=text,
        summary=text,
        summary_text=text,
        content=text,
        content_text=text,
        updated=st.none() | text,
    ),
    st.builds(ArticleSeenInFeed, article_id=names, feed_id=names),
    st.builds(
        FeedFailing,
        feed_id=names,
        url=text,
        state=st.sampled_from(["failing", "blocked"]),
        error=text,
        status=st.none() | st.integers(100, 599),
    ),
    st.builds(FeedRecovered, feed_id=names, url=text, failures=st.integers(0, 1000)),
    st.builds(
        FeedMoved, feed_id=names, old_url=text, new_url=text, status=st.sampled_from([301, 308])
    ),
    st.builds(FeedGone, feed_id=names, url=text),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(event=EVENTS)
def test_every_typed_event_survives_the_store(store: EventStore, event: Any) -> None:
    result = store.append("stream-1", [encode(event, {"poll_id": "p"})])
    (recorded,) = store.read_all(result.positions[0] - 1, limit=1)
    assert recorded.event_type == event.TYPE and recorded.schema_version == event.VERSION
    assert decode(recorded) == event


@given(event=EVENTS)
def test_a_payload_is_what_asdict_gives(event: Any) -> None:
    assert payload_of(event) == dataclasses.asdict(event)


def test_a_payload_with_a_nested_value_is_copied_deep() -> None:
    @dataclasses.dataclass(frozen=True)
    class Nested:
        inner: dict[str, list[int]]
        pairs: tuple[tuple[str, str], ...]

    event = Nested({"a": [1]}, (("x", "y"),))
    payload = payload_of(event)
    assert payload == dataclasses.asdict(event)
    assert payload["inner"] is not event.inner


def test_an_old_payload_is_upcast_on_read(store: EventStore) -> None:
    from tracker.events import _UPCASTERS, upcaster
    from tracker.records import NewEvent

    # A version-0 feed.gone payload named the URL "address"; version 1 calls it "url".
    @upcaster(FeedGone.TYPE, 0)
    def address_to_url(payload: dict[str, Any]) -> dict[str, Any]:
        payload["url"] = payload.pop("address")
        return payload

    try:
        store.append(
            "feed-x", [NewEvent(FeedGone.TYPE, {"feed_id": "x", "address": "https://x/"}, 0)]
        )
        (recorded,) = store.read_all()
        assert decode(recorded) == FeedGone("x", "https://x/")
        assert dataclasses.asdict(decode(recorded)) == {"feed_id": "x", "url": "https://x/"}
    finally:
        del _UPCASTERS[(FeedGone.TYPE, 0)]
