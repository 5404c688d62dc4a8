"""Storyline events: which rules were in force when (issue #4).

Loading feeds.yaml records each storyline's definition when it is new or changed, and its
removal, so a view of the past can apply the rules of the past.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tracker.events import event_type


@event_type
@dataclass(frozen=True)
class StorylineDefined:
    TYPE: ClassVar[str] = "storyline.defined"
    VERSION: ClassVar[int] = 1

    storyline_id: str
    title: str
    all: tuple[str, ...] = ()
    any: tuple[str, ...] = ()
    none: tuple[str, ...] = ()


@event_type
@dataclass(frozen=True)
class StorylineRemoved:
    TYPE: ClassVar[str] = "storyline.removed"
    VERSION: ClassVar[int] = 1

    storyline_id: str


# -- Curation: a user's word on one article, which beats the rules. Stream `curation-<id>`.


@event_type
@dataclass(frozen=True)
class ArticleIncluded:
    """Pinned to the storyline whatever its rules say."""

    TYPE: ClassVar[str] = "storyline.article_included"
    VERSION: ClassVar[int] = 1

    storyline_id: str
    article_id: str


@event_type
@dataclass(frozen=True)
class ArticleExcluded:
    """Kept out of the storyline whatever its rules say."""

    TYPE: ClassVar[str] = "storyline.article_excluded"
    VERSION: ClassVar[int] = 1

    storyline_id: str
    article_id: str


@event_type
@dataclass(frozen=True)
class CurationCleared:
    """An earlier include or exclude withdrawn: the rules decide again."""

    TYPE: ClassVar[str] = "storyline.curation_cleared"
    VERSION: ClassVar[int] = 1

    storyline_id: str
    article_id: str
