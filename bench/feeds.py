"""The feeds the poll-round figures fetch: 200 feeds of 50 items, served on 127.0.0.1 with
ETags, in the shape of a WordPress news feed (as The Hill's); each round has new items."""

from __future__ import annotations

import hashlib
import random
import threading
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

from bench.history import _WORDS, FEEDS, START, SUBJECTS, storylines

ITEMS = 50


def feed_ids() -> list[str]:
    return [f"feed-{n:03d}" for n in range(FEEDS)]


def body(feed_id: str, round_number: int) -> bytes:
    rng = random.Random(f"{feed_id}:{round_number}")
    items = []
    for n in range(ITEMS):
        serial = round_number * ITEMS + n
        words = [rng.choice(_WORDS) for _ in range(rng.randint(60, 180))]
        if rng.random() < 0.4:
            words.insert(rng.randrange(len(words)), rng.choice(SUBJECTS)[2][0])
        title = " ".join(words[:10]).capitalize()
        summary = " ".join(words[10:45]).capitalize() + "."
        content = "".join(
            f"<p>{escape(' '.join(words[i : i + 30]).capitalize())}.</p>"
            for i in range(45, len(words), 30)
        )
        published = format_datetime(START.replace(hour=n % 24, minute=n % 60))
        items.append(
            "<item>"
            f"<title>{escape(title)}</title>"
            f"<link>https://{feed_id}.example/news/{serial}/</link>"
            f"<dc:creator><![CDATA[Staff Writer]]></dc:creator>"
            f"<pubDate>{published}</pubDate>"
            "<category><![CDATA[News]]></category>"
            f"<guid isPermaLink='false'>https://{feed_id}.example/?p={serial}</guid>"
            f"<description><![CDATA[{escape(summary)}]]></description>"
            f"<content:encoded><![CDATA[{content}]]></content:encoded>"
            "</item>"
        )
    return (
        "<?xml version='1.0' encoding='UTF-8'?>"
        "<rss version='2.0' xmlns:content='http://purl.org/rss/1.0/modules/content/' "
        "xmlns:dc='http://purl.org/dc/elements/1.1/'><channel>"
        f"<title>{feed_id}</title><link>https://{feed_id}.example/</link>"
        f"<description>Benchmark feed</description>{''.join(items)}</channel></rss>"
    ).encode()


class FeedServer:
    """Serves round `self.round` of every feed; answers If-None-Match with 304."""

    def __init__(self) -> None:
        self.round = 0
        self._cache: dict[tuple[str, int], bytes] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 -- the name http.server calls
                feed_id = self.path.strip("/")
                content = server.content(feed_id)
                etag = f'"{hashlib.sha256(content).hexdigest()[:16]}"'
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 256

        self._http = Server(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._http.server_address[1]}"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def content(self, feed_id: str) -> bytes:
        key = (feed_id, self.round)
        if key not in self._cache:
            self._cache[key] = body(feed_id, self.round)
        return self._cache[key]

    def write_round(self, folder: Path) -> None:
        """This round's bodies as files, for timing feedparser on the very same bytes."""
        folder.mkdir(parents=True, exist_ok=True)
        for feed_id in feed_ids():
            (folder / f"{feed_id}.xml").write_bytes(self.content(feed_id))

    def config(self, path: Path) -> None:
        """A feeds.yaml of these feeds, with the history's storylines (so polling it records
        no rule change)."""
        lines = ["feeds:"]
        for feed_id in feed_ids():
            lines.append(
                f"  - {{id: {feed_id}, title: Feed {feed_id}, url: '{self.base}/{feed_id}'}}"
            )
        lines.append("storylines:")
        for story in storylines():
            terms = ", ".join(f'"{term}"' for term in story.any)
            match = f"{{any: [{terms}]}}"
            lines.append(
                f"  - {{id: {story.storyline_id}, title: '{story.title}', match: {match}}}"
            )
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
