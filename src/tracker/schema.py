"""The database tables, as SQLAlchemy Core metadata. Alembic migrations target this module.

Production code never calls `metadata.create_all`: the schema comes from the migrations in
alembic/versions, and `SCHEMA_REVISION` names the head revision this code expects.
"""

from __future__ import annotations

import sqlalchemy as sa

# Alembic head this code was written against; tests check it matches alembic/versions.
SCHEMA_REVISION = "0001_event_log"

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only makes a column the rowid alias when it is spelled exactly INTEGER PRIMARY KEY.
Position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

events = sa.Table(
    "events",
    metadata,
    # Assigned by the store as last position + 1 while it holds the append lock, so positions
    # are gapless and commit in order (see eventstore.py).
    sa.Column("position", Position, primary_key=True, autoincrement=False),
    sa.Column("event_id", sa.Uuid(), nullable=False, unique=True),
    sa.Column("stream_id", sa.String(200), nullable=False),  # widths checked in eventstore.py
    sa.Column("stream_version", sa.Integer(), nullable=False),
    sa.Column("event_type", sa.String(100), nullable=False),
    sa.Column("schema_version", sa.Integer(), nullable=False),
    # JSON kept as text: decoding text is faster than jsonb on PostgreSQL, and the hash chain
    # covers exactly the bytes stored.
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("metadata", sa.Text(), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.UniqueConstraint("stream_id", "stream_version"),
    sa.Index(None, "recorded_at"),
)
