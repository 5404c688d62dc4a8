"""The database tables, as SQLAlchemy Core metadata. Alembic migrations target this module.

Production code never calls `metadata.create_all`: the schema comes from the migrations in
alembic/versions, and `SCHEMA_REVISION` names the head revision this code expects.
"""

from __future__ import annotations

import sqlalchemy as sa

# Alembic head this code was written against; tests check it matches alembic/versions.
SCHEMA_REVISION = "0004_stream_heads"

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

# PostgreSQL: each stream's first event by stream id in byte order, so that the streams of a
# prefix (feed-, storyline-: asked at every poll round) are found without reading the log,
# whatever the database's collation. SQLite needs none: it compares text byte by byte, so a
# prefix is already a range of the (stream_id, stream_version) index.
stream_heads = sa.Index(
    "ix_events_stream_heads",
    events.c.stream_id,
    postgresql_ops={"stream_id": "text_pattern_ops"},
    postgresql_where=events.c.stream_version == 1,
    info={"only_on": "postgresql"},
).ddl_if(dialect="postgresql")

# -- Operational state of the poller: bookkeeping, not history. Losing it costs refetches and
# rebuilding from the log, never an event: everything that happened is in `events`.

feed_state = sa.Table(
    "feed_state",
    metadata,
    sa.Column("feed_id", sa.String(64), primary_key=True),
    sa.Column("url", sa.Text(), nullable=False),  # current URL: moves after a 301/308
    sa.Column("configured_url", sa.Text(), nullable=False),  # feeds.yaml's, to notice edits
    sa.Column("state", sa.String(16), nullable=False),  # healthy, failing, blocked, gone
    sa.Column("etag", sa.Text()),
    sa.Column("last_modified", sa.Text()),
    sa.Column("last_checked_at", sa.DateTime(timezone=True)),
    sa.Column("last_success_at", sa.DateTime(timezone=True)),
    sa.Column("next_due_at", sa.DateTime(timezone=True)),
    sa.Column("failures", sa.Integer(), nullable=False),
    sa.Column("last_error", sa.Text()),
    sa.Column("article_count", sa.Integer(), nullable=False),
    sa.Column("min_interval_s", sa.Integer()),
    # Who is polling it now, until when: several daemons share the work through this claim.
    sa.Column("claimed_by", sa.String(100)),
    sa.Column("claimed_until", sa.DateTime(timezone=True)),
)

article_state = sa.Table(
    "article_state",
    metadata,
    sa.Column("article_id", sa.String(200), primary_key=True),  # the article's stream id
    sa.Column("version", sa.Integer(), nullable=False),  # its stream version
    # JSON {"latest": ..., "per_feed": {feed: ...}}: a digest of each revisable field as last
    # recorded, and as each feed last showed it, to tell a real edit from noise.
    sa.Column("fingerprint", sa.Text(), nullable=False),
    sa.Column("feeds", sa.Text(), nullable=False),  # JSON list of the feed ids it was seen in
)

# -- Projections: where each view stands in the log. The view tables themselves are derived
# data, made per generation by tracker.projection (never by the migrations), so that a rebuild
# can fill fresh tables beside the old ones and swap them in at once.

projections = sa.Table(
    "projections",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    # The generation of tables readers use (0: none built yet); `next_generation` hands out
    # numbers to rebuilds, so two never fill the same tables.
    sa.Column("generation", sa.Integer(), nullable=False),
    sa.Column("position", sa.BigInteger(), nullable=False),  # the last event applied
    sa.Column("version", sa.Integer(), nullable=False),  # of the projector that built them
    sa.Column("next_generation", sa.Integer(), nullable=False),
    sa.Column("built_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
    # A replay rebuilding this projection, until when (renewed as it goes): one at a time, and
    # catch-ups leave the old tables alone meanwhile (the swap brings the new ones up to date).
    sa.Column("rebuilding_by", sa.String(100)),
    sa.Column("rebuilding_until", sa.DateTime(timezone=True)),
)
