"""Writing many view rows at once: the projectors' inserts and upserts.

A replay writes tens of thousands of rows per batch, and through SQLAlchemy each row of an
executemany is turned into parameters by Python code of its own, which cost more than the
database took to store it (issue 5).

On SQLite the statement is compiled once, by SQLAlchemy, and its rows go to the driver as
tuples, converted by the same type processors that SQLAlchemy would apply (times to text,
booleans to integers). On PostgreSQL many rows go by COPY: straight into the table when they
are all new, else into a temporary table from which one INSERT ... SELECT inserts or updates
them; a few rows keep SQLAlchemy's statements, which cost less than staging them. Either way
the rows stored are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from tracker.database import insert_missing, upsert

Row = dict[str, Any]

INSERT = "insert"  # every row is new
UPSERT = "upsert"  # a row whose key is taken replaces the one there
INSERT_MISSING = "insert-missing"  # a row whose key is taken is left out


def insert_rows(connection: sa.Connection, table: sa.Table, rows: Sequence[Row]) -> None:
    """Insert rows that are all new."""
    _write(connection, table, rows, INSERT, ())


def upsert_rows(
    connection: sa.Connection, table: sa.Table, rows: Sequence[Row], keys: Sequence[str]
) -> None:
    """Insert rows, or update the ones whose `keys` are taken."""
    _write(connection, table, rows, UPSERT, tuple(keys))


def insert_missing_rows(connection: sa.Connection, table: sa.Table, rows: Sequence[Row]) -> None:
    """Insert the rows whose primary key is not taken yet; leave the others as they are."""
    _write(connection, table, rows, INSERT_MISSING, ())


# Rows from which COPY beats one multi-row statement on PostgreSQL, staging table and all.
COPY_FROM = 64


def _write(
    connection: sa.Connection, table: sa.Table, rows: Sequence[Row], how: str, keys: tuple[str, ...]
) -> None:
    if not rows:
        return
    if connection.dialect.name == "postgresql" and len(rows) >= COPY_FROM:
        _copy(connection, table, rows, how, keys)
        return
    if connection.dialect.name != "sqlite":
        if how == UPSERT:
            upsert(connection, table, rows, keys)
        elif how == INSERT_MISSING:
            insert_missing(connection, table, rows)
        else:
            connection.execute(sa.insert(table), list(rows))
        return
    prepared = _prepared(connection.dialect, table, how, keys)
    connection.exec_driver_sql(prepared.sql, [prepared.parameters(row) for row in rows])


def _copy(
    connection: sa.Connection, table: sa.Table, rows: Sequence[Row], how: str, keys: tuple[str, ...]
) -> None:
    quote = connection.dialect.identifier_preparer.quote
    columns = [column.name for column in table.columns]
    names = ", ".join(quote(name) for name in columns)
    values = itemgetter(*columns)
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    target = quote(table.name)
    if how == INSERT:
        with cursor.copy(f"COPY {target} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(values(row))
        return
    stage = quote(f"stage_{table.name}")
    # Numbered as they come, so that they are inserted in order: of two rows with one key, the
    # first is kept (DO NOTHING), as with one statement of many rows.
    cursor.execute(
        f"CREATE TEMPORARY TABLE {stage} (LIKE {target}, stage_order bigserial) ON COMMIT DROP"
    )
    with cursor.copy(f"COPY {stage} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(values(row))
    if how == UPSERT:
        updates = ", ".join(f"{quote(n)} = excluded.{quote(n)}" for n in columns if n not in keys)
        action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
        conflict = f"ON CONFLICT ({', '.join(quote(key) for key in keys)}) {action}"
    else:
        conflict = "ON CONFLICT DO NOTHING"
    cursor.execute(
        f"INSERT INTO {target} ({names}) SELECT {names} FROM {stage} ORDER BY stage_order "
        f"{conflict}"
    )
    cursor.execute(f"DROP TABLE {stage}")


@dataclass(frozen=True)
class _Prepared:
    """A compiled statement and how to turn a row into its parameters."""

    sql: str
    values: Callable[[Row], Any]  # the row's values in the statement's order
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]  # (index, type processor)
    single: bool  # one parameter: `values` gives it bare, not in a tuple

    def parameters(self, row: Row) -> tuple[Any, ...]:
        values = self.values(row)
        if self.single:
            values = (values,)
        if not self.processors:
            return values  # type: ignore[no-any-return]
        converted = list(values)
        for index, process in self.processors:
            converted[index] = process(converted[index])
        return tuple(converted)


# Compiled statements by (dialect, table name, columns, kind, keys): a table's name holds its
# generation, so a replay's new tables get statements of their own. Bounded by clearing.
_CACHE: dict[tuple[Any, ...], _Prepared] = {}
_CACHE_SIZE = 256


def _prepared(dialect: sa.Dialect, table: sa.Table, how: str, keys: tuple[str, ...]) -> _Prepared:
    cache_key = (dialect.name, table.name, tuple(table.columns.keys()), how, keys)
    found = _CACHE.get(cache_key)
    if found is not None:
        return found
    statement = sqlite.insert(table)
    if how == UPSERT:
        updates = {c.name: statement.excluded[c.name] for c in table.columns if c.name not in keys}
        if updates:
            statement = statement.on_conflict_do_update(index_elements=list(keys), set_=updates)
        else:
            statement = statement.on_conflict_do_nothing(index_elements=list(keys))
    elif how == INSERT_MISSING:
        statement = statement.on_conflict_do_nothing()
    # Every column is named, so that rows missing one fail as SQLAlchemy's own path would.
    compiled = statement.values({c.name: sa.bindparam(c.name) for c in table.columns}).compile(
        dialect=dialect
    )
    order = compiled.positiontup
    assert order is not None, "SQLite's parameters are positional"
    processors = []
    for index, name in enumerate(order):
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors.append((index, process))
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.clear()
    found = _CACHE[cache_key] = _Prepared(
        str(compiled), itemgetter(*order), tuple(processors), len(order) == 1
    )
    return found
