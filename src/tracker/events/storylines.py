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
