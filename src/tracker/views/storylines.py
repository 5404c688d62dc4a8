"""The storylines view: which articles belong to which storyline, and why.

An article is a member when its user pinned it (curation), or when the rules in force match it
and its user did not exclude it. The rules in force are the ones the log last recorded: a
`storyline.defined` with new rules re-matches every article seen so far, so a view of the past
(built from a prefix of the log) applies the rules of the past.

The projector keeps its own folded copy of each article's text (`storyline_texts`), since it
may not read another view's tables and a change of rules needs every article again. With it go
the few facts about the article that a storyline is read by (its feed, its publication, its
last revision), copied onto its member rows, and each storyline's article count per feed
(`storyline_sources`): `tracker story` and `stories` read a storyline's span, sources and
newest articles from indexes, at a cost that does not grow with the storyline (issue 5).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from tracker.config import StorylineRules
from tracker.events.articles import ArticlePublished, ArticleRevised
from tracker.events.storylines import (
    ArticleExcluded,
    ArticleIncluded,
    CurationCleared,
    StorylineDefined,
    StorylineRemoved,
)
from tracker.matching import Match, Matcher, fold_texts, match_folded
from tracker.projection import (
    Batch,
    NamedIndex,
    Projector,
    Views,
    ViewTable,
    delete_where_in,
    rows_by,
    utc,
)
from tracker.views.writes import upsert_rows

INCLUDE = "include"
EXCLUDE = "exclude"
BY_RULES = "rules"
BY_CURATION = "curation"
_SCAN_CHUNK = 2_000


def _storyline_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("storyline_id", sa.String(64), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("rules", sa.Text(), nullable=False),  # JSON {"all": [], "any": [], "none": []}
        sa.Column("defined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("defined_position", sa.BigInteger(), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True)),
        # The last event that changed its members or what they read (their text, facts,
        # figures, names): a digest made at or after it still holds (tracker.digests).
        sa.Column("changed_position", sa.BigInteger(), nullable=False),
    ]


def _fact_columns() -> list[sa.Column[Any]]:
    """What a storyline is read by, as the articles view has it; all null for an article only
    ever seen revised (its first sight precedes the log), which no storyline shows."""
    return [
        sa.Column("feed_id", sa.String(64)),  # the feed it was first seen in
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.Column("revised_at", sa.DateTime(timezone=True)),  # its last revision; null if none
    ]


def _text_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("article_id", sa.String(200), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("folded", sa.Text(), nullable=False),  # title | summary | content, folded
        *_fact_columns(),
    ]


def _curation_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("storyline_id", sa.String(64), nullable=False),
        sa.Column("article_id", sa.String(200), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),  # include or exclude
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
    ]


def _member_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("storyline_id", sa.String(64), nullable=False),
        sa.Column("article_id", sa.String(200), nullable=False),
        sa.Column("matched_by", sa.String(16), nullable=False),  # rules or curation
        sa.Column("terms", sa.Text(), nullable=False),  # JSON list of the terms found
        sa.Column("curation_position", sa.BigInteger()),  # the event that pinned it
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        *_fact_columns(),
    ]


def _source_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("storyline_id", sa.String(64), nullable=False),
        sa.Column("feed_id", sa.String(64), nullable=False),
        sa.Column("articles", sa.Integer(), nullable=False),  # members first seen in the feed
    ]


def _digest_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("storyline_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),  # stories.DIGEST_VERSION
        sa.Column("position", sa.BigInteger(), nullable=False),  # the views it was made from
        sa.Column("entities_generation", sa.Integer(), nullable=False),
        sa.Column("figures_generation", sa.Integer(), nullable=False),
        sa.Column("figure_changes", sa.Text(), nullable=False),  # JSON, as `story --json`
        sa.Column("entities", sa.Text(), nullable=False),
    ]


STORYLINES = ViewTable("storylines", _storyline_columns, ("storyline_id",))
TEXTS = ViewTable("storyline_texts", _text_columns, ("article_id",))
CURATION = ViewTable(
    "storyline_curation", _curation_columns, ("storyline_id", "article_id"), (("article_id",),)
)
MEMBERS = ViewTable(
    "storyline_articles",
    _member_columns,
    ("storyline_id", "article_id"),
    (("article_id",),),
    (
        # A storyline's newest articles and its span read from the index in order, and its
        # members found with their feed and publication without a visit to the table.
        NamedIndex("published", ("storyline_id", "published_at", "article_id", "feed_id")),
        # Its last revision: the index's last entry.
        NamedIndex("revised", ("storyline_id", "revised_at")),
    ),
)
SOURCES = ViewTable("storyline_sources", _source_columns, ("storyline_id", "feed_id"))
# Each storyline's figure changes and names, which are read from all its members' rows: made
# after a catch-up or replay by tracker.digests, not by the projector, since they read the
# figures and entities views too.
DIGESTS = ViewTable("storyline_digests", _digest_columns, ("storyline_id",))
FACTS = tuple(column.name for column in _fact_columns())
NO_FACTS: dict[str, Any] = dict.fromkeys(FACTS)
_FACT_KEYS = ("article_id", *FACTS)


@dataclass(frozen=True)
class Story:
    storyline_id: str
    rules: StorylineRules
    active: bool


def rules_of(text: str) -> StorylineRules:
    value = json.loads(text)
    return StorylineRules(tuple(value["all"]), tuple(value["any"]), tuple(value["none"]))


def _rules_text(typed: StorylineDefined) -> str:
    return json.dumps(
        {"all": list(typed.all), "any": list(typed.any), "none": list(typed.none)},
        ensure_ascii=False,
        sort_keys=True,
    )


# json.dumps(..., ensure_ascii=False) builds an encoder at every call; this is the same one.
_terms_json = json.JSONEncoder(ensure_ascii=False).encode


def membership(
    found: Match | None, action: str | None, curation_position: int | None
) -> dict[str, Any] | None:
    """The member row's evidence for one article, or None when it is not a member: `found` is
    what the rules matched in its text (None when they did not, or its text is unknown)."""
    if action == EXCLUDE:
        return None
    terms = _terms_json(list(found.terms) if found else [])
    if action == INCLUDE:
        return {"matched_by": BY_CURATION, "terms": terms, "curation_position": curation_position}
    if found is None:
        return None
    return {"matched_by": BY_RULES, "terms": terms, "curation_position": None}


def facts_of(row: Mapping[Any, Any]) -> dict[str, Any]:
    """An article's facts from a stored row, in the form the projector writes them (aware UTC
    times), so that comparing with what it is about to write finds no change where none is."""
    return {
        "feed_id": row["feed_id"],
        "published_at": utc(row["published_at"]),
        "revised_at": utc(row["revised_at"]),
    }


class StorylinesProjector(Projector):
    name = "storylines"
    version = 3
    tables = (STORYLINES, TEXTS, CURATION, MEMBERS, SOURCES, DIGESTS)
    handles = frozenset(
        {
            ArticlePublished.TYPE,
            ArticleRevised.TYPE,
            StorylineDefined.TYPE,
            StorylineRemoved.TYPE,
            ArticleIncluded.TYPE,
            ArticleExcluded.TYPE,
            CurationCleared.TYPE,
        }
    )

    def apply(self, views: Views, batch: Batch) -> None:
        stories = _stories(views)
        touched: dict[str, int] = {}
        run: list[tuple[Any, Any]] = []
        for event, typed in batch:
            if isinstance(typed, ArticlePublished | ArticleRevised):
                run.append((event, typed))
                continue
            _articles(views, stories, run, touched)
            run = []
            if isinstance(typed, StorylineDefined):
                _define(views, stories, event, typed, touched)
            elif isinstance(typed, StorylineRemoved):
                _remove(views, stories, event, typed)
            else:
                _curate(views, stories, event, typed, touched)
        _articles(views, stories, run, touched)
        if touched:  # one statement, many parameter sets
            table = views["storylines"]
            views.connection.execute(
                sa.update(table)
                .where(table.c.storyline_id == sa.bindparam("s"))
                .values(changed_position=sa.bindparam("p")),
                [{"s": s, "p": p} for s, p in sorted(touched.items())],
            )

    def changes(self, old: Views, new: Views) -> list[str]:
        """Per storyline, the articles the rebuild added and removed, with their titles (the
        first CHANGES_LISTED of each). Worked out in the database: at a million events a
        storyline's members do not fit in memory twice over."""
        lines = []
        for storyline_id in _storyline_ids(old, new):
            added = _difference(new, old, storyline_id)
            removed = _difference(old, new, storyline_id)
            added_count, removed_count = _count(new, added), _count(new, removed)
            if not added_count and not removed_count:
                continue
            members = new["storyline_articles"]
            now = new.connection.execute(
                sa.select(sa.func.count()).where(members.c.storyline_id == storyline_id)
            ).scalar_one()
            lines.append(
                f"{storyline_id}: {added_count} article(s) added, {removed_count} removed "
                f"({now} now)"
            )
            lines += _listed("+", added, added_count, new, old)
            lines += _listed("-", removed, removed_count, old, new)
        return lines


CHANGES_LISTED = 20


def _storyline_ids(old: Views, new: Views) -> list[str]:
    ids = sa.union(
        sa.select(old["storylines"].c.storyline_id), sa.select(new["storylines"].c.storyline_id)
    ).subquery()
    query = sa.select(ids.c.storyline_id).order_by(ids.c.storyline_id)
    return list(new.connection.execute(query).scalars())


def _difference(one: Views, other: Views, storyline_id: str) -> sa.Subquery:
    """The members of `storyline_id` in `one` that `other` has not."""
    mine, theirs = one["storyline_articles"], other["storyline_articles"]
    return sa.except_(
        sa.select(mine.c.article_id).where(mine.c.storyline_id == storyline_id),
        sa.select(theirs.c.article_id).where(theirs.c.storyline_id == storyline_id),
    ).subquery()


def _count(views: Views, ids: sa.Subquery) -> int:
    return int(views.connection.execute(sa.select(sa.func.count()).select_from(ids)).scalar_one())


def _listed(sign: str, ids: sa.Subquery, count: int, where: Views, fallback: Views) -> list[str]:
    """A line for each of the first CHANGES_LISTED articles, with its title as `where` (else
    `fallback`) has it."""
    if not count:
        return []
    chosen = list(
        where.connection.execute(
            sa.select(ids.c.article_id).order_by(ids.c.article_id).limit(CHANGES_LISTED)
        ).scalars()
    )
    titles = {**_titles(fallback, chosen), **_titles(where, chosen)}
    lines = [f"  {sign} {titles.get(a, a)} ({a})" for a in chosen]
    if count > len(chosen):
        lines.append(f"  {sign} ... and {count - len(chosen)} more")
    return lines


def _stories(views: Views) -> dict[str, Story]:
    table = views["storylines"]
    return {
        row.storyline_id: Story(row.storyline_id, rules_of(row.rules), row.removed_at is None)
        for row in views.connection.execute(sa.select(table).order_by(table.c.storyline_id))
    }


def _articles(
    views: Views, stories: dict[str, Story], run: list[tuple[Any, Any]], touched: dict[str, int]
) -> None:
    """Store the texts of a run of article events and match them against every storyline,
    event by event, so that where a batch ends never changes the result. Each storyline an
    event's article was or is a member of is `touched` at its position: a new version changes
    the storyline's figures and names even where the member row stays the same."""
    if not run:
        return
    connection = views.connection
    # Each article with whether its first event in the run is a revision: then its facts are
    # the stored ones.
    first: dict[str, bool] = {}
    for _, typed in run:
        first.setdefault(typed.article_id, isinstance(typed, ArticleRevised))
    ids = first.keys()
    texts: dict[str, dict[str, Any]] = {}
    curation = {
        (row["storyline_id"], row["article_id"]): row
        for row in rows_by(connection, views["storyline_curation"], "article_id", ids)
    }
    before = _member_rows(rows_by(connection, views["storyline_articles"], "article_id", ids))
    members = dict(before)
    facts = _stored_facts(views, {article_id for article_id, revised in first.items() if revised})
    active = {storyline_id for storyline_id, story in stories.items() if story.active}
    matcher = _matcher(tuple((s, stories[s].rules) for s in sorted(active)))
    # Beyond the storylines its text matches, an article's membership can change only where it
    # has a member or curation row: a storyline it left, or one its user pinned or excluded.
    rows: dict[str, set[str]] = {}
    for storyline_id, article_id in (*curation, *before):
        if storyline_id in active:
            rows.setdefault(article_id, set()).add(storyline_id)
    for event, typed in run:
        article_id = typed.article_id
        at = utc(event.recorded_at)
        if isinstance(typed, ArticlePublished):
            facts[article_id] = {
                "feed_id": typed.feed_id,
                "published_at": utc(typed.published),
                "revised_at": None,
            }
        else:
            known = facts.get(article_id, NO_FACTS)
            # As in the articles view, a revision of an article never seen published is not
            # counted: no storyline shows that article anyway.
            revised_at = at if known["published_at"] is not None else None
            facts[article_id] = {**known, "revised_at": revised_at}
        folded = fold_texts((typed.title_text, typed.summary_text, typed.content_text))
        texts[article_id] = {
            "article_id": article_id,
            "title": typed.title_text,
            "folded": folded,
            **facts[article_id],
        }
        found = matcher.matches(folded)
        affected = rows.setdefault(article_id, set())
        affected.update(found)
        for storyline_id in sorted(affected):
            key = (storyline_id, article_id)
            was = key in members
            _update(members, key, found.get(storyline_id), curation.get(key), facts[article_id], at)
            if was or key in members:
                touched[storyline_id] = event.position
    upsert_rows(
        connection, views["storyline_texts"], [texts[a] for a in sorted(texts)], ("article_id",)
    )
    _write_members(views, before, members)


def _stored_facts(views: Views, ids: set[str]) -> dict[str, dict[str, Any]]:
    rows = rows_by(views.connection, views["storyline_texts"], "article_id", ids, _FACT_KEYS)
    return {row["article_id"]: facts_of(row) for row in rows}


def _member_rows(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(row["storyline_id"], row["article_id"]): {**row, **facts_of(row)} for row in rows}


@lru_cache(maxsize=8)
def _matcher(rules: tuple[tuple[str, StorylineRules], ...]) -> Matcher:
    return Matcher(dict(rules))


def _update(
    members: dict[tuple[str, str], dict[str, Any]],
    key: tuple[str, str],
    found: Match | None,
    curated: dict[str, Any] | None,
    facts: dict[str, Any],
    at: Any,
) -> None:
    """One (storyline, article)'s membership after an event at `at`, given what the rules
    found in its text and the article's facts: a member keeps the time it joined while its
    evidence or its facts change."""
    if curated is None and key not in members and found is None:
        return  # the common case: no member before, none now, nothing to build
    now = membership(
        found,
        curated["action"] if curated else None,
        curated["position"] if curated else None,
    )
    old = members.get(key)
    if now is None:
        members.pop(key, None)
        return
    now.update(facts)
    if old is None or any(old[k] != v for k, v in now.items()):
        since = old["since"] if old is not None else at
        members[key] = {"storyline_id": key[0], "article_id": key[1], "since": since, **now}


def _write_members(
    views: Views,
    before: dict[tuple[str, str], dict[str, Any]],
    after: dict[tuple[str, str], dict[str, Any]],
) -> None:
    table = views["storyline_articles"]
    gone = [{"s": s, "a": a} for s, a in sorted(set(before) - set(after))]
    if gone:  # one statement, many parameter sets
        views.connection.execute(
            sa.delete(table).where(
                table.c.storyline_id == sa.bindparam("s"), table.c.article_id == sa.bindparam("a")
            ),
            gone,
        )
    changed = [key for key in sorted(after) if before.get(key) != after[key]]
    upsert_rows(
        views.connection, table, [after[key] for key in changed], ("storyline_id", "article_id")
    )
    # Only members whose article was seen published are shown, and counted.
    counts: Counter[tuple[str, str]] = Counter()
    for key in (*(before.keys() - after.keys()), *changed):
        for row, step in ((before.get(key), -1), (after.get(key), 1)):
            if row is not None and row["published_at"] is not None:
                counts[(key[0], row["feed_id"])] += step
    _count_sources(views, counts)


def _count_sources(views: Views, counts: Counter[tuple[str, str]]) -> None:
    """Add members' arrivals and departures to their storylines' counts per feed: added by the
    database in one statement, with no read before it; counts that fall to nothing go."""
    rows = [
        {"storyline_id": storyline_id, "feed_id": feed_id, "articles": step}
        for (storyline_id, feed_id), step in sorted(counts.items())
        if step
    ]
    if not rows:
        return
    table = views["storyline_sources"]
    dialect = postgresql if views.connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    views.connection.execute(
        statement.on_conflict_do_update(
            index_elements=["storyline_id", "feed_id"],
            set_={"articles": table.c.articles + statement.excluded.articles},
        ),
        rows,
    )
    storylines = sorted({storyline_id for (storyline_id, _), step in counts.items() if step})
    views.connection.execute(
        sa.delete(table).where(table.c.storyline_id.in_(storylines), table.c.articles == 0)
    )


Case = tuple[Story, str, str | None, dict[str, Any] | None, dict[str, Any]]


def _settle(
    views: Views,
    cases: Iterable[Case],
    members: dict[tuple[str, str], dict[str, Any]],
    event: Any,
    touched: dict[str, int],
) -> None:
    """Write each (storyline, article)'s membership as it stands after `event`; a case is the
    storyline, the article, its folded text, its curation and its facts, and `members` holds
    the current member rows of every case. A storyline with a member before or after is
    `touched` at the event's position."""
    at = utc(event.recorded_at)
    after = dict(members)
    for story, article_id, folded, curated, facts in cases:
        key = (story.storyline_id, article_id)
        found = match_folded(story.rules, folded) if folded is not None else None
        _update(after, key, found, curated, facts, at)
        if key in members or key in after:
            touched[story.storyline_id] = event.position
    _write_members(views, members, after)


def _define(
    views: Views,
    stories: dict[str, Story],
    event: Any,
    typed: StorylineDefined,
    touched: dict[str, int],
) -> None:
    table = views["storylines"]
    rules_text = _rules_text(typed)
    rules = rules_of(rules_text)
    previous = stories.get(typed.storyline_id)
    at = utc(event.recorded_at)
    upsert_rows(
        views.connection,
        table,
        [
            {
                "storyline_id": typed.storyline_id,
                "title": typed.title,
                "rules": rules_text,
                "defined_at": at,
                "defined_position": event.position,
                "removed_at": None,
                "changed_position": event.position,
            }
        ],
        ("storyline_id",),
    )
    story = Story(typed.storyline_id, rules, True)
    stories[typed.storyline_id] = story
    # Its row says so already; marked here too, or apply's last update would put back an
    # earlier event of the batch that touched it.
    touched[typed.storyline_id] = event.position
    if previous is not None and previous.active and previous.rules == rules:
        return  # a new title only
    _rematch(views, story, event, touched)


def _remove(views: Views, stories: dict[str, Story], event: Any, typed: StorylineRemoved) -> None:
    table = views["storylines"]
    views.connection.execute(
        sa.update(table)
        .where(table.c.storyline_id == typed.storyline_id)
        .values(removed_at=utc(event.recorded_at))
    )
    for name in ("storyline_articles", "storyline_sources", "storyline_digests"):
        delete_where_in(views.connection, views[name], "storyline_id", [typed.storyline_id])
    previous = stories.get(typed.storyline_id)
    if previous is not None:
        stories[typed.storyline_id] = Story(previous.storyline_id, previous.rules, False)


def _rematch(views: Views, story: Story, event: Any, touched: dict[str, int]) -> None:
    """Match every article seen so far against a storyline's new rules."""
    connection = views.connection
    curation_table, members_table = views["storyline_curation"], views["storyline_articles"]
    curation = {
        row.article_id: dict(row._mapping)
        for row in connection.execute(
            sa.select(curation_table).where(curation_table.c.storyline_id == story.storyline_id)
        )
    }
    members = _member_rows(
        dict(row._mapping)
        for row in connection.execute(
            sa.select(members_table).where(members_table.c.storyline_id == story.storyline_id)
        )
    )
    seen: set[str] = set()
    for chunk in _all_texts(views):
        ids = {article_id for article_id, _, _ in chunk}
        seen |= ids
        _settle(
            views,
            (
                (story, article_id, folded, curation.get(article_id), facts)
                for article_id, folded, facts in chunk
            ),
            {k: v for k, v in members.items() if k[1] in ids},
            event,
            touched,
        )
    # Pinned articles whose text the view never saw (their first sight precedes the log).
    unseen = set(curation) - seen
    _settle(
        views,
        ((story, a, None, curation[a], NO_FACTS) for a in sorted(unseen)),
        {k: v for k, v in members.items() if k[1] in unseen},
        event,
        touched,
    )


def _all_texts(views: Views) -> Iterator[list[tuple[str, str, dict[str, Any]]]]:
    """Every stored text with its article's facts, in article order, a chunk at a time
    (keyset: flat cost per chunk)."""
    table = views["storyline_texts"]
    after = ""
    while True:
        chunk = [
            (row.article_id, row.folded, facts_of(row._mapping))
            for row in views.connection.execute(
                sa.select(table.c.article_id, table.c.folded, *(table.c[name] for name in FACTS))
                .where(table.c.article_id > after)
                .order_by(table.c.article_id)
                .limit(_SCAN_CHUNK)
            )
        ]
        if not chunk:
            return
        yield chunk
        after = chunk[-1][0]


def _curate(
    views: Views, stories: dict[str, Story], event: Any, typed: Any, touched: dict[str, int]
) -> None:
    connection = views.connection
    table = views["storyline_curation"]
    key = (typed.storyline_id, typed.article_id)
    delete_where = sa.and_(table.c.storyline_id == key[0], table.c.article_id == key[1])
    connection.execute(sa.delete(table).where(delete_where))
    curated = None
    if not isinstance(typed, CurationCleared):
        curated = {
            "storyline_id": key[0],
            "article_id": key[1],
            "action": INCLUDE if isinstance(typed, ArticleIncluded) else EXCLUDE,
            "recorded_at": utc(event.recorded_at),
            "position": event.position,
        }
        connection.execute(sa.insert(table), [curated])
    story = stories.get(typed.storyline_id)
    if story is None or not story.active:
        return  # kept: it applies if the storyline is defined again
    text = rows_by(connection, views["storyline_texts"], "article_id", [typed.article_id])
    members_table = views["storyline_articles"]
    members = _member_rows(rows_by(connection, members_table, "article_id", [typed.article_id]))
    folded, facts = (text[0]["folded"], facts_of(text[0])) if text else (None, NO_FACTS)
    _settle(views, [(story, typed.article_id, folded, curated, facts)], members, event, touched)


def _titles(views: Views, article_ids: list[str]) -> dict[str, str]:
    table = views["storyline_texts"]
    query = sa.select(table.c.article_id, table.c.title).where(table.c.article_id.in_(article_ids))
    return {row.article_id: row.title for row in views.connection.execute(query)}
