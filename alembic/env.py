"""Alembic environment for tracker: one entry point for `alembic` and `tracker db upgrade`."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

from tracker.database import create_engine, migration_connection, parse_database_url
from tracker.schema import metadata
from tracker.settings import resolve_database_url

config = context.config
if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _database_url() -> str:
    option = context.get_x_argument(as_dictionary=True).get("database_url")
    return resolve_database_url(option or config.get_main_option("sqlalchemy.url") or None)


def _configure(**kwargs: object) -> None:
    # Batch mode lets later migrations alter SQLite tables by copy-and-move.
    context.configure(target_metadata=metadata, render_as_batch=True, **kwargs)  # type: ignore[arg-type]


def run_offline() -> None:
    _configure(url=parse_database_url(_database_url()), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # handed over by tracker.migrate, already in a transaction
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_database_url())
    try:
        with migration_connection(engine) as connection:
            _configure(connection=connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
