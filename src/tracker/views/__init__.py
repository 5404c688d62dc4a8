"""The views tracker builds from the log: one projector per module, each with its own tables.

feeds        each feed's health, title, last success and article count
articles     each article's current version, revision count and the feeds it was seen in
storylines   storyline definitions, curation, and member articles with their evidence
figures      amounts reported in each article (money, counts, percentages, durations)
entities     people, places and organisations named in each article
"""

from __future__ import annotations

from tracker.projection import Projector
from tracker.views.articles import ArticlesProjector
from tracker.views.extracts import EntitiesProjector, FiguresProjector
from tracker.views.feeds import FeedsProjector
from tracker.views.storylines import StorylinesProjector

PROJECTORS: tuple[Projector, ...] = (
    ArticlesProjector(),
    EntitiesProjector(),
    FeedsProjector(),
    FiguresProjector(),
    StorylinesProjector(),
)
BY_NAME = {projector.name: projector for projector in PROJECTORS}


def chosen(names: tuple[str, ...] | list[str] = ()) -> tuple[Projector, ...]:
    """The projectors named (all of them for none), in a fixed order."""
    if not names:
        return PROJECTORS
    return tuple(projector for projector in PROJECTORS if projector.name in set(names))
