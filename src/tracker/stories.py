"""Reading storylines from the views: what `tracker story` and `tracker stories` show.

Every query of one answer runs in one snapshot of the views (tracker.reading.read_views),
so a replay swapping the tables meanwhile is seen entirely or not at all. The same functions
read the views of the past that time travel builds in memory.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from tracker.amounts import format_value
from tracker.errors import UsageError
from tracker.names import PERSON, key
from tracker.projection import utc
from tracker.reading import Snapshot
from tracker.summary import RECENT_ARTICLES, SourceText, summarise

KEY_FIGURE_GROUPS = 5
TOP_ENTITIES = 12


class UnknownStoryline(UsageError):
    pass


@dataclass(frozen=True)
class Source:
    id: str
    title: str
    count: int


@dataclass(frozen=True)
class StoryArticle:
    id: str
    title: str
    url: str | None
    source: str
    published_at: datetime
    revisions: int
    matched_by: str  # rules or curation
    terms: tuple[str, ...]
    curation_position: int | None
    updated_at: datetime


@dataclass(frozen=True)
class Figure:
    kind: str
    value: float
    unit: str
    label: str
    text: str
    sentence: str
    article_id: str
    source: str
    published_at: datetime
    earlier: bool = False  # named as the value before another ("up from $15 million")


@dataclass(frozen=True)
class FigureStep:
    value: float
    text: str  # the value written the usual way: "$25 million"
    first_reported: datetime
    source: str
    article_id: str


@dataclass(frozen=True)
class FigureChange:
    """One reported figure over time (the reward: $15 million, then $25m, then $50m)."""

    kind: str
    label: str
    unit: str
    mentions: int
    steps: tuple[FigureStep, ...]


@dataclass(frozen=True)
class EntityCount:
    name: str
    kind: str
    count: int


@dataclass(frozen=True)
class SummarySentence:
    text: str
    article_id: str
    source: str
    published_at: datetime


@dataclass(frozen=True)
class Story:
    id: str
    title: str
    rules: dict[str, list[str]]
    articles: tuple[StoryArticle, ...]
    sources: tuple[Source, ...]
    summary: tuple[SummarySentence, ...]
    figures: tuple[Figure, ...]
    figure_changes: tuple[FigureChange, ...]
    entities: tuple[EntityCount, ...]
    per_day: tuple[tuple[str, int], ...]
    position: int  # the log position the views stand at
    head: int  # the log's last position when read
    as_of: datetime | None = None
    past: bool = False  # built as the log stood at `position` (--as-of, --as-of-position)

    @property
    def first_seen(self) -> datetime | None:
        return min((a.published_at for a in self.articles), default=None)

    @property
    def last_published(self) -> datetime | None:
        return max((a.published_at for a in self.articles), default=None)

    @property
    def last_updated(self) -> datetime | None:
        """The newest article's publication, or a later revision's recording."""
        times = [a.published_at for a in self.articles] + [
            a.updated_at for a in self.articles if a.revisions
        ]
        return max(times, default=None)

    def as_json_object(self) -> dict[str, Any]:
        """The documented JSON form (README: `tracker story --json`)."""
        return {
            "id": self.id,
            "title": self.title,
            "article_count": len(self.articles),
            "first_seen": _iso(self.first_seen),
            "last_updated": _iso(self.last_updated),
            "sources": [{"id": s.id, "title": s.title, "count": s.count} for s in self.sources],
            "summary": [
                {
                    "text": s.text,
                    "article_id": s.article_id,
                    "source": s.source,
                    "published_at": _iso(s.published_at),
                }
                for s in self.summary
            ],
            "figures": [
                {
                    "kind": f.kind,
                    "value": _number(f.value),
                    "unit": f.unit,
                    "label": f.label,
                    "text": f.text,
                    "sentence": f.sentence,
                    "article_id": f.article_id,
                    "source": f.source,
                    "published_at": _iso(f.published_at),
                    "earlier": f.earlier,
                }
                for f in self.figures
            ],
            "figure_changes": [
                {
                    "kind": c.kind,
                    "label": c.label,
                    "unit": c.unit,
                    "mentions": c.mentions,
                    "values": [
                        {
                            "value": _number(step.value),
                            "text": step.text,
                            "first_reported": _iso(step.first_reported),
                            "source": step.source,
                            "article_id": step.article_id,
                        }
                        for step in c.steps
                    ],
                }
                for c in self.figure_changes
            ],
            "articles": [
                {
                    "id": a.id,
                    "title": a.title,
                    "url": a.url,
                    "source": a.source,
                    "published_at": _iso(a.published_at),
                    "revisions": a.revisions,
                    "matched": {
                        "by": a.matched_by,
                        "terms": list(a.terms),
                        "curation_position": a.curation_position,
                    },
                }
                for a in self.articles
            ],
            "entities": [{"name": e.name, "kind": e.kind, "count": e.count} for e in self.entities],
            "per_day": [{"date": day, "count": count} for day, count in self.per_day],
            "rules": self.rules,
            "position": self.position,
            "as_of": _iso(self.as_of),
        }


@dataclass(frozen=True)
class StorylineSummary:
    id: str
    title: str
    article_count: int
    sources: tuple[Source, ...]
    last_updated: datetime | None

    def as_json_object(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "article_count": self.article_count,
            "sources": [{"id": s.id, "title": s.title, "count": s.count} for s in self.sources],
            "last_updated": _iso(self.last_updated),
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


# -- queries ---------------------------------------------------------------------------------


def storyline_ids(snapshot: Snapshot) -> list[str]:
    table = snapshot.views["storylines"]
    query = (
        sa.select(table.c.storyline_id)
        .where(table.c.removed_at.is_(None))
        .order_by(table.c.storyline_id)
    )
    return list(snapshot.views.connection.execute(query).scalars())


def member_ids(snapshot: Snapshot, storyline_id: str) -> set[str]:
    members = snapshot.views["storyline_articles"]
    query = sa.select(members.c.article_id).where(members.c.storyline_id == storyline_id)
    return set(snapshot.views.connection.execute(query).scalars())


def _storyline_row(snapshot: Snapshot, storyline_id: str) -> sa.Row[Any]:
    table = snapshot.views["storylines"]
    row = snapshot.views.connection.execute(
        sa.select(table).where(table.c.storyline_id == storyline_id)
    ).first()
    if row is None or row.removed_at is not None:
        known = ", ".join(storyline_ids(snapshot)) or "none yet"
        gone = (
            f" since {_time(row.removed_at).strftime('%Y-%m-%d %H:%MZ')}, when it left feeds.yaml"
            if row is not None
            else ""
        )
        raise UnknownStoryline(f"no storyline {storyline_id!r}{gone} (storylines: {known})")
    return row


def no_storyline(storyline_id: str) -> Story:
    """What asking for a storyline in an empty log gives: the unknown-storyline error."""
    raise UnknownStoryline(f"no storyline {storyline_id!r} (storylines: none yet)")


def story(
    snapshot: Snapshot, storyline_id: str, as_of: datetime | None = None, past: bool = False
) -> Story:
    row = _storyline_row(snapshot, storyline_id)
    articles = _articles(snapshot, storyline_id)
    texts = _texts(snapshot, storyline_id)
    figures = _figures(snapshot, storyline_id)
    return Story(
        id=storyline_id,
        title=row.title,
        rules=json.loads(row.rules),
        articles=tuple(articles),
        sources=tuple(_sources(snapshot, articles)),
        summary=tuple(
            SummarySentence(c.text, c.article_id, c.source, c.published_at)
            for c in summarise(texts)
        ),
        figures=tuple(figures),
        figure_changes=tuple(figure_changes(figures)),
        entities=tuple(_entities(snapshot, storyline_id)),
        per_day=tuple(_per_day(articles)),
        position=snapshot.position,
        head=snapshot.head,
        as_of=as_of,
        past=past,
    )


def stories(snapshot: Snapshot) -> list[StorylineSummary]:
    found = []
    for storyline_id in storyline_ids(snapshot):
        row = _storyline_row(snapshot, storyline_id)
        articles = _articles(snapshot, storyline_id)
        times = [a.published_at for a in articles] + [a.updated_at for a in articles if a.revisions]
        found.append(
            StorylineSummary(
                storyline_id,
                row.title,
                len(articles),
                tuple(_sources(snapshot, articles)),
                max(times, default=None),
            )
        )
    return found


def _member_query(snapshot: Snapshot, storyline_id: str, *columns: Any) -> sa.Select[Any]:
    members = snapshot.views["storyline_articles"]
    articles = snapshot.views["articles"]
    return (
        sa.select(*columns)
        .select_from(members.join(articles, articles.c.article_id == members.c.article_id))
        .where(members.c.storyline_id == storyline_id)
    )


def _articles(snapshot: Snapshot, storyline_id: str) -> list[StoryArticle]:
    members = snapshot.views["storyline_articles"]
    a = snapshot.views["articles"]
    query = _member_query(
        snapshot,
        storyline_id,
        a.c.article_id,
        a.c.title,
        a.c.link,
        a.c.feed_id,
        a.c.published_at,
        a.c.revisions,
        a.c.updated_at,
        members.c.matched_by,
        members.c.terms,
        members.c.curation_position,
    ).order_by(a.c.published_at, a.c.article_id)
    return [
        StoryArticle(
            row.article_id,
            row.title,
            row.link,
            row.feed_id,
            _time(row.published_at),
            row.revisions,
            row.matched_by,
            tuple(json.loads(row.terms)),
            row.curation_position,
            _time(row.updated_at),
        )
        for row in snapshot.views.connection.execute(query)
    ]


def _time(value: Any) -> datetime:
    moment = utc(value)
    assert moment is not None
    return moment


def _sources(snapshot: Snapshot, articles: Sequence[StoryArticle]) -> list[Source]:
    counts = Counter(article.source for article in articles)
    titles = feed_titles(snapshot, list(counts))
    return [
        Source(feed_id, titles.get(feed_id) or feed_id, count)
        for feed_id, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]


def feed_titles(snapshot: Snapshot, feed_ids: Sequence[str]) -> dict[str, str]:
    if "feeds" not in snapshot.views or not feed_ids:
        return {}
    feeds = snapshot.views["feeds"]
    query = sa.select(feeds.c.feed_id, feeds.c.title).where(feeds.c.feed_id.in_(sorted(feed_ids)))
    return {row.feed_id: row.title for row in snapshot.views.connection.execute(query) if row.title}


def _texts(snapshot: Snapshot, storyline_id: str) -> list[SourceText]:
    a = snapshot.views["articles"]
    query = (
        _member_query(
            snapshot,
            storyline_id,
            a.c.article_id,
            a.c.feed_id,
            a.c.published_at,
            a.c.title,
            a.c.summary_text,
            a.c.content_text,
        )
        .order_by(a.c.published_at.desc(), a.c.article_id.desc())
        .limit(RECENT_ARTICLES)
    )
    return [
        SourceText(
            row.article_id,
            row.feed_id,
            _time(row.published_at),
            row.title,
            row.summary_text,
            row.content_text,
        )
        for row in snapshot.views.connection.execute(query)
    ]


def _figures(snapshot: Snapshot, storyline_id: str) -> list[Figure]:
    f = snapshot.views["figures"]
    a = snapshot.views["articles"]
    members = snapshot.views["storyline_articles"]
    query = (
        sa.select(
            f.c.kind,
            f.c.value,
            f.c.unit,
            f.c.label,
            f.c.text,
            f.c.sentence,
            f.c.article_id,
            a.c.feed_id,
            a.c.published_at,
            f.c.earlier,
        )
        .select_from(
            f.join(members, members.c.article_id == f.c.article_id).join(
                a, a.c.article_id == f.c.article_id
            )
        )
        .where(members.c.storyline_id == storyline_id)
        .order_by(a.c.published_at, f.c.article_id, f.c.seq)
    )
    return [
        Figure(
            row.kind,
            float(row.value),
            row.unit,
            row.label,
            row.text,
            row.sentence,
            row.article_id,
            row.feed_id,
            _time(row.published_at),
            bool(row.earlier),
        )
        for row in snapshot.views.connection.execute(query)
    ]


def figure_changes(figures: Sequence[Figure]) -> list[FigureChange]:
    """Figures grouped by what they measure (kind, label, unit), each group's distinct values
    in the order they were first reported; the most reported groups first."""
    groups: dict[tuple[str, str, str], list[Figure]] = {}
    # In publication order; in one article, a value named as the earlier one comes first.
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
    # Figures that changed first, then the most reported.
    changes.sort(key=lambda c: (len(c.steps) < 2, -c.mentions, c.kind, c.label, c.unit))
    return changes


def _entities(snapshot: Snapshot, storyline_id: str) -> list[EntityCount]:
    e = snapshot.views["entities"]
    members = snapshot.views["storyline_articles"]
    query = (
        sa.select(e.c.name, e.c.kind, sa.func.sum(e.c.count).label("mentions"))
        .select_from(e.join(members, members.c.article_id == e.c.article_id))
        .where(members.c.storyline_id == storyline_id)
        .group_by(e.c.name, e.c.kind)
    )
    counts: dict[tuple[str, str], Counter[str]] = {}
    for row in snapshot.views.connection.execute(query):
        counts.setdefault((key(row.name), row.kind), Counter())[row.name] += int(row.mentions)
    _merge_surnames(counts)
    merged = [
        EntityCount(min(spellings, key=lambda n: (-spellings[n], n)), kind, sum(spellings.values()))
        for (_, kind), spellings in counts.items()
    ]
    merged.sort(key=lambda item: (-item.count, item.name, item.kind))
    return merged[:TOP_ENTITIES]


def _merge_surnames(counts: dict[tuple[str, str], Counter[str]]) -> None:
    """A person named by surname only in one article ("President Trump") joins the one fuller
    name ending so ("Donald Trump") from another."""
    people = sorted(k for k, kind in counts if kind == PERSON)
    for short in people:
        words = short.split()
        longer = [
            p for p in people if len(p.split()) > len(words) and p.split()[-len(words) :] == words
        ]
        if len(longer) == 1 and (longer[0], PERSON) in counts and (short, PERSON) in counts:
            counts[(longer[0], PERSON)].update(counts.pop((short, PERSON)))


def _per_day(articles: Sequence[StoryArticle]) -> list[tuple[str, int]]:
    days = Counter(article.published_at.date().isoformat() for article in articles)
    return sorted(days.items())
