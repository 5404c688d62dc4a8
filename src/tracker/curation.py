"""Curation: a user's word on which articles belong to a storyline, recorded as events.

`storyline.article_included` pins an article, `storyline.article_excluded` keeps it out and
`storyline.curation_cleared` gives it back to the rules; they beat the rules from then on (the
storylines view applies them). One stream per storyline: `curation-<id>`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tracker.errors import UsageError
from tracker.events import decode, encode
from tracker.events.storylines import (
    ArticleExcluded,
    ArticleIncluded,
    CurationCleared,
    StorylineDefined,
    StorylineRemoved,
)
from tracker.eventstore import EventStore

_DEFINITIONS = (StorylineDefined.TYPE, StorylineRemoved.TYPE)


def curate(
    store: EventStore,
    storyline_id: str,
    include: Sequence[str],
    exclude: Sequence[str],
    clear: Sequence[str],
    resolve: Callable[[str], str],
) -> list[str]:
    """Record what changes: a line per article named. `resolve` turns an id or URL into the
    article's stream id (UsageError when there is none)."""
    from tracker.stories import UnknownStoryline

    definition = store.last_event(f"storyline-{storyline_id}", _DEFINITIONS)
    if definition is None or definition.event_type != StorylineDefined.TYPE:
        known = ", ".join(active_storylines(store)) or "none yet"
        raise UnknownStoryline(f"no storyline {storyline_id!r} (storylines: {known})")
    stream = f"curation-{storyline_id}"
    # Each article's curation in force, as the log has it: a repeat is no event.
    current: dict[str, type] = {}
    for event in store.read_stream(stream):
        typed = decode(event)
        current[typed.article_id] = type(typed)
    wanted: dict[str, Any] = {}
    lines: dict[str, str] = {}
    for verb, given, kind in (
        ("included", include, ArticleIncluded),
        ("excluded", exclude, ArticleExcluded),
        ("given back to the rules", clear, CurationCleared),
    ):
        for reference in given:
            article_id = resolve(reference)
            if article_id in lines:
                raise UsageError(f"{reference}: named twice; give each article once")
            if current.get(article_id, CurationCleared) is kind:
                lines[article_id] = f"{article_id}: already {verb}, nothing to record"
                continue
            wanted[article_id] = kind(storyline_id, article_id)
            lines[article_id] = f"{article_id}: {verb}"
    if wanted:
        metadata = {"source": "tracker story"}
        store.append(stream, [encode(event, metadata) for event in wanted.values()])
    return list(lines.values())


def active_storylines(store: EventStore) -> list[str]:
    """The storylines the log defines and has not removed."""
    active = []
    for stream in store.stream_ids("storyline-"):
        newest = store.last_event(stream, _DEFINITIONS)
        if newest is not None and newest.event_type == StorylineDefined.TYPE:
            active.append(stream.removeprefix("storyline-"))
    return active
