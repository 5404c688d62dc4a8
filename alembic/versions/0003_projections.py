"""Projections: each view's checkpoint in the log and the generation of tables it reads from.

The view tables themselves (`feeds__g1`, `storyline_articles__g1`, ...) are derived data: the
projection framework (tracker.projection) creates them for each generation it builds and drops
the old ones, and `tracker replay` can always make them again from the log.

Revision ID: 0003_projections
Revises: 0002_poll_state
Create Date: 2026-12-01
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_projections"
down_revision: str | None = "0002_poll_state"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_GENERATION_TABLE = re.compile(r"^[a-z_]+__g\d+$")


def upgrade() -> None:
    op.create_table(
        "projections",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("next_generation", sa.Integer(), nullable=False),
        sa.Column("built_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
        sa.Column("rebuilding_by", sa.String(100)),
        sa.Column("rebuilding_until", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("name", name="pk_projections"),
    )


def downgrade() -> None:
    # The views and their tables go with the table that names them; views of other names, a
    # user's own among them, are left alone.
    inspector = sa.inspect(op.get_bind())
    generations = [t for t in inspector.get_table_names() if _GENERATION_TABLE.match(t)]
    ours = {table.rsplit("__g", 1)[0] for table in generations}
    for view in inspector.get_view_names():
        if view in ours:
            op.execute(sa.text(f'DROP VIEW "{view}"'))
    for table in generations:
        op.drop_table(table)
    op.drop_table("projections")
