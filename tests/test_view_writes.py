"""View rows written in bulk are stored exactly as SQLAlchemy's own statements store them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracker.database import create_engine, insert_missing, upsert
from tracker.views.writes import COPY_FROM, insert_missing_rows, insert_rows, upsert_rows


def _table(metadata: sa.MetaData, name: str) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("key", sa.String(20), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text()),
        sa.Column("at", sa.DateTime(timezone=True)),
        sa.Column("flag", sa.Boolean()),
        sa.Column("value", sa.Float()),
        sa.Column("big", sa.BigInteger()),
        sa.PrimaryKeyConstraint("key", "seq", name=f"pk_{name}"),
    )


moments = st.one_of(
    st.none(),
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1)),
    st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    st.builds(
        lambda moment, hours: moment.replace(tzinfo=timezone(timedelta(hours=hours))),
        st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1)),
        st.integers(-12, 12),
    ),
)
rows = st.lists(
    st.fixed_dictionaries(
        {
            "key": st.sampled_from(["a", "b", "c"]),
            "seq": st.integers(0, 3),
            "text": st.one_of(st.none(), st.text(max_size=20)),
            "at": moments,
            "flag": st.one_of(st.none(), st.booleans()),
            "value": st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
            "big": st.one_of(st.none(), st.integers(-(2**62), 2**62)),
        }
    ),
    max_size=12,
)


def _stored(connection: sa.Connection, table: sa.Table) -> list[tuple[Any, ...]]:
    """The rows as the database holds them (SQLite: the very text of each time)."""
    query = f"SELECT * FROM {table.name} ORDER BY key, seq"
    return [tuple(row) for row in connection.exec_driver_sql(query)]


def _unique(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per key, as a projector writes them: its last version."""
    return list({(row["key"], row["seq"]): row for row in batch}.values())


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=rows, second=rows)
def test_bulk_writes_store_what_sqlalchemy_stores(
    tmp_path: Path, first: list[dict[str, Any]], second: list[dict[str, Any]]
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'writes.db'}")
    metadata = sa.MetaData()
    ours = {how: _table(metadata, f"ours_{how}") for how in ("insert", "upsert", "missing")}
    theirs = {how: _table(metadata, f"theirs_{how}") for how in ("insert", "upsert", "missing")}
    try:
        with engine.begin() as connection:
            metadata.drop_all(connection)
            metadata.create_all(connection)
            keys = ("key", "seq")
            insert_rows(connection, ours["insert"], _unique(first))
            if first:  # SQLAlchemy's own path refuses an empty list
                connection.execute(sa.insert(theirs["insert"]), _unique(first))
            for batch in (_unique(first), _unique(second)):
                upsert_rows(connection, ours["upsert"], batch, keys)
                upsert(connection, theirs["upsert"], batch, keys)
                insert_missing_rows(connection, ours["missing"], batch)
                insert_missing(connection, theirs["missing"], batch)
            for how in ("insert", "upsert", "missing"):
                assert _stored(connection, ours[how]) == _stored(connection, theirs[how])
    finally:
        engine.dispose()


def test_bulk_writes_on_both_databases(engine: sa.Engine) -> None:
    metadata = sa.MetaData()
    table = _table(metadata, "bulk")
    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    row = {"key": "a", "seq": 1, "text": "x", "at": moment, "flag": True, "value": 1.5, "big": 7}
    with engine.begin() as connection:
        metadata.create_all(connection)
        insert_rows(connection, table, [row])
        upsert_rows(connection, table, [{**row, "text": "y"}], ("key", "seq"))
        insert_missing_rows(connection, table, [{**row, "text": "z"}, {**row, "seq": 2}])
        with pytest.raises(sa.exc.IntegrityError), connection.begin_nested():
            insert_rows(connection, table, [row])
        found = connection.execute(sa.select(table).order_by(table.c.seq)).all()
    assert [(r.seq, r.text, r.flag, r.value, r.big) for r in found] == [
        (1, "y", True, 1.5, 7),
        (2, "x", True, 1.5, 7),
    ]
    stored = found[0].at if found[0].at.tzinfo else found[0].at.replace(tzinfo=UTC)
    assert stored == moment


def _varied(count: int, salt: str) -> list[dict[str, Any]]:
    """Rows with every kind of value COPY has to carry: NULLs, tabs, newlines, backslashes,
    quotes, accents, times in other zones, extreme floats and integers."""
    texts = [
        None,
        "",
        "plain",
        "tab\there",
        "new\nline",
        "back\\slash",
        "quote'\"",
        "Nicolás",
        "\\N",
    ]
    floats = [None, 0.0, -0.0, 1.5, 1e308, -2.2250738585072014e-308, 0.1 + 0.2]
    found = []
    for n in range(count):
        zone = timezone(timedelta(hours=n % 7 - 3))
        found.append(
            {
                "key": f"k{n % (count // 2)}",  # each key twice: the second row is a duplicate
                "seq": n // (count // 2),
                "text": (texts[n % len(texts)] or "") + salt if n % 5 else None,
                "at": None
                if n % 11 == 0
                else datetime(2026, 1, 1, tzinfo=zone)
                + timedelta(seconds=n * 3607, microseconds=n),
                "flag": None if n % 13 == 0 else bool(n % 2),
                "value": floats[n % len(floats)],
                "big": None if n % 17 == 0 else (2**62 - n) * (-1) ** n,
            }
        )
    return found


def test_many_rows_are_stored_as_sqlalchemys_statements_store_them(engine: sa.Engine) -> None:
    # Enough rows for PostgreSQL's COPY; duplicate keys for insert-missing, where the first
    # of two rows with one key is kept.
    first, second = _varied(2 * COPY_FROM, "1"), _varied(2 * COPY_FROM, "2")
    duplicated = [{**row, "seq": 0} for row in first]  # each key twice, unlike each time
    metadata = sa.MetaData()
    ours = {how: _table(metadata, f"ours_{how}") for how in ("insert", "upsert", "missing")}
    theirs = {how: _table(metadata, f"theirs_{how}") for how in ("insert", "upsert", "missing")}
    keys = ("key", "seq")
    with engine.begin() as connection:
        metadata.create_all(connection)
        insert_rows(connection, ours["insert"], first)
        connection.execute(sa.insert(theirs["insert"]), first)
        for batch in (first, second):
            upsert_rows(connection, ours["upsert"], batch, keys)
            upsert(connection, theirs["upsert"], batch, keys)
        for batch in (duplicated, second):
            insert_missing_rows(connection, ours["missing"], batch)
            insert_missing(connection, theirs["missing"], batch)
        for how in ("insert", "upsert", "missing"):
            mine, reference = ours[how], theirs[how]
            assert connection.execute(sa.select(mine).order_by(*mine.c)).all() == (
                connection.execute(sa.select(reference).order_by(*reference.c)).all()
            )
        stored = connection.execute(sa.select(ours["missing"]).order_by(*ours["missing"].c))
        assert len(stored.all()) == 2 * COPY_FROM  # every key once: the duplicates left out
