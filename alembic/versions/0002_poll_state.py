"""The poller's operational state: feed bookkeeping and the last recorded form of each article.

Revision ID: 0002_poll_state
Revises: 0001_event_log
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_poll_state"
down_revision: str | None = "0001_event_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feed_state",
        sa.Column("feed_id", sa.String(64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("configured_url", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("etag", sa.Text()),
        sa.Column("last_modified", sa.Text()),
        sa.Column("last_checked_at", sa.DateTime(timezone=True)),
        sa.Column("last_success_at", sa.DateTime(timezone=True)),
        sa.Column("next_due_at", sa.DateTime(timezone=True)),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("article_count", sa.Integer(), nullable=False),
        sa.Column("min_interval_s", sa.Integer()),
        sa.Column("claimed_by", sa.String(100)),
        sa.Column("claimed_until", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("feed_id", name="pk_feed_state"),
    )
    op.create_table(
        "article_state",
        sa.Column("article_id", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("feeds", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("article_id", name="pk_article_state"),
    )


def downgrade() -> None:
    op.drop_table("article_state")
    op.drop_table("feed_state")
