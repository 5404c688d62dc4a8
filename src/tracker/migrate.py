"""Running the Alembic migrations from inside tracker (`tracker db upgrade`, first use)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy.engine import Engine

from tracker.database import describe, migration_connection
from tracker.errors import SchemaError


def migrations_dir() -> Path:
    """The alembic/ folder: packaged inside tracker by the wheel, or beside src/ in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "migrations", here.parents[1] / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise SchemaError("tracker's migrations are missing from this installation")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database, serialised against other processes doing the same at once."""
    _run(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> None:
    _run(engine, command.downgrade, revision)


def _run(engine: Engine, step: Callable[[Config, str], None], revision: str) -> None:
    config = alembic_config()
    with migration_connection(engine) as connection:
        config.attributes["connection"] = connection
        try:
            step(config, revision)
        except CommandError as error:
            # Typically a revision this tracker does not know: a newer tracker's database.
            raise SchemaError(
                f"{describe(engine.url)}: cannot migrate: {error} (was this database written "
                "by a newer tracker, or by another application?)"
            ) from None
