"""Where tracker finds its database and its feeds.yaml.

Resolution order for each setting: the command-line option, then the environment variable,
then the default. The CLI and alembic/env.py both resolve through here so that `tracker` and
`alembic upgrade head` always agree on which database they mean.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATABASE_URL_ENV = "TRACKER_DATABASE_URL"
CONFIG_ENV = "TRACKER_CONFIG"
DEFAULT_DATABASE_URL = "sqlite:///tracker.db"
DEFAULT_CONFIG_PATH = "feeds.yaml"


def resolve_database_url(option: str | None = None) -> str:
    return option or os.environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE_URL


def resolve_config_path(option: str | os.PathLike[str] | None = None) -> Path:
    return Path(option or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


@dataclass(frozen=True)
class Settings:
    database_url: str
    config_path: Path

    @classmethod
    def resolve(
        cls, database_url: str | None = None, config_path: str | os.PathLike[str] | None = None
    ) -> Settings:
        return cls(resolve_database_url(database_url), resolve_config_path(config_path))
