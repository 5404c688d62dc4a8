"""A writer process for the concurrency tests: appends to its own stream and a shared one.

usage: append_worker.py DATABASE_URL WRITER_INDEX EVENTS
Prints the ids it appended, one per line, when done.
"""

from __future__ import annotations

import random
import sys

from tracker.database import create_engine
from tracker.errors import ConcurrencyError
from tracker.eventstore import EventStore
from tracker.records import NewEvent


def main(url: str, writer: int, total: int) -> None:
    store = EventStore(create_engine(url))
    rng = random.Random(writer)
    own_stream, own_version = f"writer-{writer}", 0
    written: list[str] = []
    while len(written) < total:
        batch = [
            NewEvent("test.appended", {"writer": writer, "n": len(written) + i, "pad": "x" * 200})
            for i in range(min(rng.randint(1, 3), total - len(written)))
        ]
        if rng.random() < 0.3:
            # Contend on one stream with the other writers: optimistic concurrency must refuse
            # stale writers, who re-read the version and try again.
            while True:
                try:
                    store.append("shared", batch, store.stream_version("shared"))
                    break
                except ConcurrencyError:
                    continue
        else:
            own_version = store.append(own_stream, batch, own_version).stream_version
        written.extend(str(event.event_id) for event in batch)
    store.engine.dispose()
    print("\n".join(written))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
