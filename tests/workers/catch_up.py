"""A process that brings the views up to the log, as a daemon does after a poll.

usage: catch_up.py DATABASE_URL [BATCH_SIZE]
"""

from __future__ import annotations

import sys

from tracker.database import create_engine
from tracker.eventstore import EventStore
from tracker.projection import CATCH_UP_BATCH, catch_up
from tracker.views import PROJECTORS


def main(url: str, batch_size: int) -> None:
    engine = create_engine(url)
    try:
        catch_up(EventStore(engine), PROJECTORS, batch_size=batch_size)
    finally:
        engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else CATCH_UP_BATCH)
