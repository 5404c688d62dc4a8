"""Reading storylines from the views: what `tracker story` and `tracker stories` show.

Every query of one answer runs in one snapshot of the views (tracker.reading.read_views),
so a replay swapping the tables meanwhile is seen entirely or not at all. The same functions
read the views of the past that time travel builds in memory.

What the terminal shows is read without reading every member (issue 5): the span, sources
and count from indexes and the per-feed counts the storylines view keeps, the timeline and
summary from the newest articles only, figure changes and names from the storyline's digest
(tracker.digests). Where no digest holds (views of the past, or a catch-up that has not made
it yet) they are summed from each member's rows, the one read that follows the storyline's
size. Only `--json`, which lists every member and every figure, reads them all.
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
# The views a storyline's digest is made from (tracker.digests), and the version of what it
# holds: changed whenever what `story` makes of those views changes (how figure changes are
# ordered, which names are merged or kept), so that digests made by older code are not read.
DIGESTED = ("entities", "figures", "storylines")
DIGEST_VERSION = 1


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

    def as_json_object(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "unit": self.unit,
            "mentions": self.mentions,
            "values": [
                {
                    "value": _number(step.value),
                    "text": step.text,
                    "first_reported": _iso(step.first_reported),
                    "source": step.source,
                    "article_id": step.article_id,
                }
                for step in self.steps
            ],
        }

    @classmethod
    def from_json_object(cls, value: dict[str, Any]) -> FigureChange:
        steps = tuple(
            FigureStep(
                float(step["value"]),
                step["text"],
                datetime.fromisoformat(step["first_reported"]),
                step["source"],
                step["article_id"],
            )
            for step in value["values"]
        )
        return cls(value["kind"], value["label"], value["unit"], value["mentions"], steps)


@dataclass(frozen=True)
class EntityCount:
    name: str
    kind: str
    count: int

    def as_json_object(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "count": self.count}

    @classmethod
    def from_json_object(cls, value: dict[str, Any]) -> EntityCount:
        return cls(value["name"], value["kind"], value["count"])


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
    article_count: int
    first_seen: datetime | None  # the first article's publication
    last_published: datetime | None
    last_updated: datetime | None  # the newest article's publication, or a later revision
    articles: tuple[StoryArticle, ...]  # in publication order; only the newest if not complete
    sources: tuple[Source, ...]
    summary: tuple[SummarySentence, ...]
    figures: tuple[Figure, ...]  # empty if not complete
    figure_changes: tuple[FigureChange, ...]
    entities: tuple[EntityCount, ...]
    per_day: tuple[tuple[str, int], ...]  # empty if not complete
    position: int  # the log position the views stand at
    head: int  # the log's last position when read
    as_of: datetime | None = None
    past: bool = False  # built as the log stood at `position` (--as-of, --as-of-position)
    complete: bool = True  # every member and figure; False when read for its newest only

    def as_json_object(self) -> dict[str, Any]:
        """The documented JSON form (README: `tracker story --json`)."""
        if not self.complete:
            raise ValueError(f"story {self.id} was read with its newest articles only")
        return {
            "id": self.id,
            "title": self.title,
            "article_count": self.article_count,
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
            "figure_changes": [c.as_json_object() for c in self.figure_changes],
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
            "entities": [e.as_json_object() for e in self.entities],
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
    snapshot: Snapshot,
    storyline_id: str,
    as_of: datetime | None = None,
    past: bool = False,
    newest: int | None = None,
) -> Story:
    """A storyline as the snapshot shows it. `newest`: carry only that many of its newest
    articles, and neither the list of figures nor the articles per day: all the terminal
    shows, without reading every member (such a story cannot be printed as JSON). None: every
    member and every figure, as `--json` documents."""
    row = _storyline_row(snapshot, storyline_id)
    first_seen, last_published, last_revised = _span(snapshot, storyline_id)
    sources = _sources(snapshot, storyline_id)
    recent = _newest(snapshot, storyline_id, max(newest or 0, RECENT_ARTICLES))
    if newest is None:
        articles = _articles(snapshot, storyline_id)
        figures = _figures(snapshot, storyline_id)
        per_day = _per_day(articles)
    else:
        articles, figures, per_day = [article for article, _ in recent[:newest]][::-1], [], []
    digest = _digest(snapshot, row)
    if digest is not None:
        changes, entities = digest
    else:
        changes = figure_changes(snapshot, storyline_id)
        entities = entity_counts(snapshot, storyline_id)
    return Story(
        id=storyline_id,
        title=row.title,
        rules=json.loads(row.rules),
        article_count=sum(source.count for source in sources),
        first_seen=first_seen,
        last_published=last_published,
        last_updated=max((t for t in (last_published, last_revised) if t), default=None),
        articles=tuple(articles),
        sources=tuple(sources),
        summary=tuple(
            SummarySentence(c.text, c.article_id, c.source, c.published_at)
            for c in summarise([text for _, text in recent])
        ),
        figures=tuple(figures),
        figure_changes=tuple(changes),
        entities=tuple(entities),
        per_day=tuple(per_day),
        position=snapshot.position,
        head=snapshot.head,
        as_of=as_of,
        past=past,
        complete=newest is None,
    )


def stories(snapshot: Snapshot) -> list[StorylineSummary]:
    """Every storyline's count, sources and last update, in three queries whatever the number
    of articles: the counts are kept per feed, the last times read from indexes."""
    storylines = snapshot.views["storylines"]
    members = snapshot.views["storyline_articles"]
    counted = snapshot.views["storyline_sources"]

    def newest(column: sa.Column[Any]) -> Any:
        return (
            sa.select(sa.func.max(column))
            .where(members.c.storyline_id == storylines.c.storyline_id)
            .scalar_subquery()
        )

    query = (
        sa.select(
            storylines.c.storyline_id,
            storylines.c.title,
            newest(members.c.published_at).label("last_published"),
            newest(members.c.revised_at).label("last_revised"),
        )
        .where(storylines.c.removed_at.is_(None))
        .order_by(storylines.c.storyline_id)
    )
    rows = list(snapshot.views.connection.execute(query))
    counts: dict[str, dict[str, int]] = {}
    ids = [row.storyline_id for row in rows]
    for count in snapshot.views.connection.execute(
        sa.select(counted).where(counted.c.storyline_id.in_(ids))
    ):
        counts.setdefault(count.storyline_id, {})[count.feed_id] = count.articles
    titles = feed_titles(snapshot, sorted({feed for found in counts.values() for feed in found}))
    found = []
    for row in rows:
        sources = _ranked(counts.get(row.storyline_id, {}), titles)
        times = [_time(t) for t in (row.last_published, row.last_revised) if t is not None]
        found.append(
            StorylineSummary(
                row.storyline_id,
                row.title,
                sum(source.count for source in sources),
                tuple(sources),
                max(times, default=None),
            )
        )
    return found


def _members(snapshot: Snapshot, storyline_id: str) -> Any:
    """The storyline's members that can be shown: those whose article was seen published."""
    members = snapshot.views["storyline_articles"]
    return sa.and_(members.c.storyline_id == storyline_id, members.c.published_at.is_not(None))


def _per_member(
    snapshot: Snapshot, name: str, columns: Sequence[str], *conditions: Any
) -> tuple[sa.FromClause, sa.FromClause]:
    """The members joined with their rows of a per-article view (`columns` of them, those
    meeting `conditions`), and what those columns are to be read from.

    Each member's rows are looked up by its article id, so the cost follows the storyline, not
    the log. SQLite plans it so by itself. PostgreSQL, costing each look-up as a read from disk,
    would rather hash the whole view; a LATERAL subquery with OFFSET 0 (which the planner keeps
    as it is written) makes it look them up.
    """
    members = snapshot.views["storyline_articles"]
    table = snapshot.views[name]
    matched = table.c.article_id == members.c.article_id
    if snapshot.views.connection.dialect.name != "postgresql":
        return members.join(table, sa.and_(matched, *conditions)), table
    rows = (
        sa.select(*(table.c[column] for column in columns))
        .where(matched, *conditions)
        .offset(0)
        .lateral()
    )
    return members.join(rows, sa.true()), rows


_ARTICLE_COLUMNS = (
    "article_id",
    "title",
    "link",
    "feed_id",
    "published_at",
    "revisions",
    "updated_at",
)


def _article_query(snapshot: Snapshot, storyline_id: str, *texts: str) -> sa.Select[Any]:
    """The members with what a story shows of their articles (and the `texts` named), in
    publication order."""
    members = snapshot.views["storyline_articles"]
    joined, a = _per_member(snapshot, "articles", (*_ARTICLE_COLUMNS, *texts))
    return (
        sa.select(
            *(a.c[column] for column in (*_ARTICLE_COLUMNS, *texts)),
            members.c.matched_by,
            members.c.terms,
            members.c.curation_position,
        )
        .select_from(joined)
        .where(_members(snapshot, storyline_id))
    )


def _span(
    snapshot: Snapshot, storyline_id: str
) -> tuple[datetime | None, datetime | None, datetime | None]:
    """The first and last publication and the last revision, each from its index's end."""
    members = snapshot.views["storyline_articles"]

    def end(function: Any, column: sa.Column[Any]) -> Any:
        return sa.select(function(column)).where(_members(snapshot, storyline_id)).scalar_subquery()

    row = snapshot.views.connection.execute(
        sa.select(
            end(sa.func.min, members.c.published_at),
            end(sa.func.max, members.c.published_at),
            end(sa.func.max, members.c.revised_at),
        )
    ).one()
    first, last, revised = (utc(value) for value in row)
    return first, last, revised


def _article(row: Any) -> StoryArticle:
    return StoryArticle(
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


def _articles(snapshot: Snapshot, storyline_id: str) -> list[StoryArticle]:
    """Every member, in publication order (`--json` only)."""
    members = snapshot.views["storyline_articles"]
    query = _article_query(snapshot, storyline_id).order_by(
        members.c.published_at, members.c.article_id
    )
    return [_article(row) for row in snapshot.views.connection.execute(query)]


def _newest(
    snapshot: Snapshot, storyline_id: str, count: int
) -> list[tuple[StoryArticle, SourceText]]:
    """The `count` newest members with their texts, newest first: read in the order of the
    members' index, so only these are visited."""
    members = snapshot.views["storyline_articles"]
    query = (
        _article_query(snapshot, storyline_id, "summary_text", "content_text")
        .order_by(members.c.published_at.desc(), members.c.article_id.desc())
        .limit(count)
    )
    found = []
    for row in snapshot.views.connection.execute(query):
        article = _article(row)
        text = SourceText(
            article.id,
            article.source,
            article.published_at,
            article.title,
            row.summary_text,
            row.content_text,
        )
        found.append((article, text))
    return found


def _time(value: Any) -> datetime:
    moment = utc(value)
    assert moment is not None
    return moment


def _sources(snapshot: Snapshot, storyline_id: str) -> list[Source]:
    counted = snapshot.views["storyline_sources"]
    query = sa.select(counted.c.feed_id, counted.c.articles).where(
        counted.c.storyline_id == storyline_id
    )
    counts = {row.feed_id: row.articles for row in snapshot.views.connection.execute(query)}
    return _ranked(counts, feed_titles(snapshot, list(counts)))


def _ranked(counts: dict[str, int], titles: dict[str, str]) -> list[Source]:
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


def _figures(snapshot: Snapshot, storyline_id: str) -> list[Figure]:
    """Every figure of every member, in publication order (`--json` only)."""
    members = snapshot.views["storyline_articles"]
    columns = ("kind", "value", "unit", "label", "text", "sentence", "article_id", "seq", "earlier")
    joined, f = _per_member(snapshot, "figures", columns)
    query = (
        sa.select(*(f.c[column] for column in columns), members.c.feed_id, members.c.published_at)
        .select_from(joined)
        .where(_members(snapshot, storyline_id))
        .order_by(members.c.published_at, f.c.article_id, f.c.seq)
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


def _digest(
    snapshot: Snapshot, storyline: sa.Row[Any]
) -> tuple[list[FigureChange], list[EntityCount]] | None:
    """The storyline's figure changes and names as its digest holds them (tracker.digests), or
    None where there is none that still holds: made from other generations of the figures or
    entities views, or before a change to its members, or the views read stand at different
    positions (a replay of one of them under way)."""
    if not same_position(snapshot):
        return None
    table = snapshot.views["storyline_digests"]
    digest = snapshot.views.connection.execute(
        sa.select(table).where(table.c.storyline_id == storyline.storyline_id)
    ).first()
    if digest is None or not digest_holds(snapshot, storyline.changed_position, digest):
        return None
    return (
        [FigureChange.from_json_object(c) for c in json.loads(digest.figure_changes)],
        [EntityCount.from_json_object(e) for e in json.loads(digest.entities)],
    )


def digest_holds(snapshot: Snapshot, changed_position: int, digest: Any) -> bool:
    """Whether a storyline's digest row stands for the snapshot's views: made by this code,
    from these generations of the figures and entities views, at or after the storyline's last
    change. The views must stand at one position (same_position)."""
    return bool(
        digest.version == DIGEST_VERSION
        and digest.position >= changed_position
        and digest.entities_generation == snapshot.generations["entities"]
        and digest.figures_generation == snapshot.generations["figures"]
    )


def same_position(snapshot: Snapshot) -> bool:
    """Whether the views a digest is made from are all in the snapshot, current ones, at one
    position: only then does a digest made at a position stand for them. Views of the past are
    built in private and never digested; a view a replay is rebuilding may stand apart."""
    if not all(name in snapshot.generations for name in DIGESTED):
        return False
    return len({snapshot.positions[name] for name in DIGESTED}) == 1


def figure_changes(snapshot: Snapshot, storyline_id: str) -> list[FigureChange]:
    """Figures grouped by what they measure (kind, label, unit), each group's distinct values
    in the order they were first reported; the groups that changed first, then the most
    reported. The database groups them: one row per distinct value comes back, its first
    report (in publication order; in one article, a value named as the earlier one first)
    and its group's mentions beside it."""
    from tracker.views.extracts import LABELLED  # the views, imported when read, not at start

    members = snapshot.views["storyline_articles"]
    figures = snapshot.views["figures"]
    columns = ("kind", "label", "unit", "value", "article_id", "earlier", "seq")
    # The condition of the figures' partial index, written as it is there.
    joined, f = _per_member(snapshot, "figures", columns, sa.text(f"{figures.name}.{LABELLED}"))
    group = (f.c.kind, f.c.label, f.c.unit)
    first = (members.c.published_at, f.c.article_id, f.c.earlier.desc(), f.c.seq)
    ranked = (
        sa.select(
            *(f.c[column] for column in columns),
            members.c.feed_id,
            members.c.published_at,
            sa.func.count().over(partition_by=group).label("mentions"),
            sa.func.row_number().over(partition_by=(*group, f.c.value), order_by=first).label("n"),
        )
        .select_from(joined)
        .where(_members(snapshot, storyline_id))
        .subquery()
    )
    query = sa.select(ranked).where(ranked.c.n == 1)
    groups: dict[tuple[str, str, str], list[Any]] = {}
    mentions: dict[tuple[str, str, str], int] = {}
    for row in snapshot.views.connection.execute(query):
        key = (row.kind, row.label, row.unit)
        groups.setdefault(key, []).append(row)
        mentions[key] = row.mentions
    changes = []
    for (kind, label, unit), values in groups.items():
        values.sort(key=lambda r: (_time(r.published_at), r.article_id, not r.earlier, r.seq))
        steps = tuple(
            FigureStep(
                float(r.value),
                format_value(kind, Decimal(repr(float(r.value))), unit),
                _time(r.published_at),
                r.feed_id,
                r.article_id,
            )
            for r in values
        )
        changes.append(FigureChange(kind, label, unit, mentions[(kind, label, unit)], steps))
    changes.sort(key=lambda c: (len(c.steps) < 2, -c.mentions, c.kind, c.label, c.unit))
    return changes


def entity_counts(snapshot: Snapshot, storyline_id: str) -> list[EntityCount]:
    """The people, places and organisations its members name most, with their mentions."""
    joined, e = _per_member(snapshot, "entities", ("name", "kind", "count"))
    query = (
        sa.select(e.c.name, e.c.kind, sa.func.sum(e.c.count).label("mentions"))
        .select_from(joined)
        .where(_members(snapshot, storyline_id))
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
    # Each name under every shorter run of words it ends with: a short name's fuller ones are
    # found in one look-up, not by comparing it with every other person.
    fuller: dict[tuple[str, ...], list[str]] = {}
    for person in people:
        words = tuple(person.split())
        for start in range(1, len(words)):
            fuller.setdefault(words[start:], []).append(person)
    for short in people:
        longer = fuller.get(tuple(short.split()), [])
        if len(longer) == 1 and (longer[0], PERSON) in counts and (short, PERSON) in counts:
            counts[(longer[0], PERSON)].update(counts.pop((short, PERSON)))


def _per_day(articles: Sequence[StoryArticle]) -> list[tuple[str, int]]:
    days = Counter(article.published_at.date().isoformat() for article in articles)
    return sorted(days.items())
