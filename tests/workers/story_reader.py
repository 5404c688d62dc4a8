"""A reader process: reads one storyline from the views in a loop, as `tracker story` does,
and prints what it saw each time: the member count and a digest of the member ids.

usage: story_reader.py DATABASE_URL STORYLINE TIMEOUT_SECONDS
Prints "ready" once it has read once, then a line per read; stops at SIGTERM or the timeout.
"""

from __future__ import annotations

import hashlib
import signal
import sys
import time

from tracker.service import Tracker
from tracker.settings import Settings

stopping = False


def stop(_signum: int, _frame: object) -> None:
    global stopping
    stopping = True


def main(url: str, storyline: str, timeout: float) -> None:
    signal.signal(signal.SIGTERM, stop)
    deadline = time.monotonic() + timeout
    with Tracker(Settings.resolve(url)) as tracker:
        tracker.story(storyline)
        print("ready", flush=True)
        while not stopping and time.monotonic() < deadline:
            story = tracker.story(storyline)
            ids = sorted(article.id for article in story.articles)
            # A story is consistent when its count and its list agree with one build.
            assert len(ids) == len(story.as_json_object()["articles"])
            digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
            print(len(ids), digest, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
