"""The figures and entities views: what each article's current version reports and names.

Both are worked out from one article's text alone, so each article's rows are simply replaced
whenever it is published or revised. A storyline's figures and names are its members' rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import sqlalchemy as sa

from tracker.amounts import figures_in
from tracker.events.articles import ArticlePublished, ArticleRevised
from tracker.matching import fold
from tracker.names import entities_in
from tracker.projection import Batch, NamedIndex, Projector, Views, ViewTable, delete_where_in
from tracker.views.writes import insert_rows


def article_sentences_text(title: str, summary: str, content: str) -> list[str]:
    """An article's texts to read, without a summary that only repeats the content's start
    (many feeds send the lead paragraph as both)."""
    texts = [title]
    # A summary found in the content as it stands is found there with spaces normalised too;
    # only the rest pay for normalising both.
    if (
        summary
        and summary not in content
        and " ".join(summary.split()) not in " ".join(content.split())
    ):
        texts.append(summary)
    texts.append(content)
    return [text for text in texts if text]


class _PerArticle(Projector):
    """Rows worked out from an article's latest text, replaced with each new version."""

    table_name: ClassVar[str]
    handles = frozenset({ArticlePublished.TYPE, ArticleRevised.TYPE})

    def apply(self, views: Views, batch: Batch) -> None:
        latest: dict[str, Any] = {}
        for _, typed in batch:  # only an article's last version in the batch matters
            latest[typed.article_id] = typed
        table = views[self.table_name]
        delete_where_in(views.connection, table, "article_id", latest)
        rows = [
            row
            for article_id in sorted(latest)
            for row in self.rows(
                article_id,
                article_sentences_text(
                    latest[article_id].title_text,
                    latest[article_id].summary_text,
                    latest[article_id].content_text,
                ),
            )
        ]
        insert_rows(views.connection, table, rows)

    def rows(self, article_id: str, texts: list[str]) -> Iterable[dict[str, Any]]:
        raise NotImplementedError(f"{type(self).__name__} extracts nothing")


def _figure_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("article_id", sa.String(200), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),  # reading order in the article
        sa.Column("kind", sa.String(16), nullable=False),  # money, count, percent, duration
        sa.Column("value", sa.Float(), nullable=False),  # in base units: 50000000
        sa.Column("unit", sa.String(64), nullable=False),  # USD, investors, %, years
        sa.Column("label", sa.String(64), nullable=False),  # reward, sentence, ... or ""
        sa.Column("text", sa.Text(), nullable=False),  # as printed: "$50 million"
        sa.Column("sentence", sa.Text(), nullable=False),
        # Named as the value before another: "to $25 million, up from $15 million".
        sa.Column("earlier", sa.Boolean(), nullable=False),
    ]


def _entity_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("article_id", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),  # person, place, organisation
        sa.Column("count", sa.Integer(), nullable=False),  # mentions in the article
    ]


# What a storyline's figure changes are read from, without a visit to the table: the few
# figures that say what they measure.
LABELLED = "label <> ''"
FIGURES = ViewTable(
    "figures",
    _figure_columns,
    ("article_id", "seq"),
    named_indexes=(
        NamedIndex(
            "labelled", ("article_id", "kind", "label", "unit", "value", "earlier", "seq"), LABELLED
        ),
    ),
)
ENTITIES = ViewTable("entities", _entity_columns, ("article_id", "name", "kind"), clustered=True)


class FiguresProjector(_PerArticle):
    name = "figures"
    version = 2
    tables = (FIGURES,)
    table_name = "figures"

    def rows(self, article_id: str, texts: list[str]) -> Iterable[dict[str, Any]]:
        seen: set[tuple[str, str]] = set()
        seq = 0
        for text in texts:
            for figure in figures_in(text):
                # The title's figure is usually the body's again; one is enough.
                said = (figure.text, fold(figure.sentence))
                if said in seen:
                    continue
                seen.add(said)
                seq += 1
                yield {
                    "article_id": article_id,
                    "seq": seq,
                    "kind": figure.kind,
                    "value": float(figure.value),
                    "unit": figure.unit[:64],
                    "label": figure.label,
                    "text": figure.text,
                    "sentence": figure.sentence,
                    "earlier": figure.earlier,
                }


class EntitiesProjector(_PerArticle):
    name = "entities"
    version = 2
    tables = (ENTITIES,)
    table_name = "entities"

    def rows(self, article_id: str, texts: list[str]) -> Iterable[dict[str, Any]]:
        for entity in entities_in(texts):
            if len(entity.name) <= 200:
                yield {
                    "article_id": article_id,
                    "name": entity.name,
                    "kind": entity.kind,
                    "count": entity.count,
                }
