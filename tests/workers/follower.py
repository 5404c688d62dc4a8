"""A follower process: tails the log by position until it has seen EXPECTED events.

usage: follower.py DATABASE_URL EXPECTED TIMEOUT_SECONDS
Prints "position event_id" for every event it saw, in the order it saw them.
"""

from __future__ import annotations

import sys
import time

from tracker.database import create_engine
from tracker.eventstore import EventStore


def main(url: str, expected: int, timeout: float) -> None:
    store = EventStore(create_engine(url))
    seen: list[str] = []
    last = 0
    deadline = time.monotonic() + timeout
    while len(seen) < expected and time.monotonic() < deadline:
        # Small batches and no pause: read as often as possible while writers are busy, so an
        # event that committed out of position order would be skipped.
        for event in store.read_all(last, batch_size=7):
            seen.append(f"{event.position} {event.event_id}")
            last = event.position
    store.engine.dispose()
    print("\n".join(seen))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
