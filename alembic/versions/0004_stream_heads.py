"""PostgreSQL: an index of each stream's first event, for finding streams by prefix.

The feeds' and storylines' definitions are looked up at every poll round by their streams'
prefix. SQLite finds those in its (stream_id, stream_version) index, which orders text byte by
byte; PostgreSQL's orders by the database's collation, in which a prefix is no range (en_US
ignores punctuation), and its LIKE then reads the whole log. A text_pattern_ops index compares
byte by byte in any collation; partial, it holds one entry per stream.

Revision ID: 0004_stream_heads
Revises: 0003_projections
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_stream_heads"
down_revision: str | None = "0003_projections"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_events_stream_heads",
            "events",
            ["stream_id"],
            postgresql_ops={"stream_id": "text_pattern_ops"},
            postgresql_where=sa.text("stream_version = 1"),
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_events_stream_heads", table_name="events")
