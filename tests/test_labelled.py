"""Measured matching (issue #4, point 10): the shipped storyline rules against a labelled set.

tests/data/labelled/articles.yaml holds invented articles, each labelled by topic (not by
keyword) with the storylines it is about, and hard negatives that share the storylines' words.
They are served as RSS feeds from a loopback server, polled, and the storyline views built from
the log are scored: precision, recall, and the TDT normalised tracking cost
C_norm = P_miss + 4.9 * P_false_alarm (C_miss = 1, C_fa = 0.1, P_target = 0.02).
"""

from __future__ import annotations

from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
import yaml
from feedserver import FeedServer, Reply
from helpers import REPO_ROOT

from tracker.config import load_config
from tracker.identity import article_stream
from tracker.service import Tracker
from tracker.settings import Settings

LABELLED = Path(__file__).parent / "data" / "labelled" / "articles.yaml"
MIN_PRECISION = 0.95
MIN_RECALL = 0.90
FALSE_ALARM_WEIGHT = 0.1 * (1 - 0.02) / (1 * 0.02)  # C_fa (1 - P_target) / (C_miss P_target)


def _rss(source: str, articles: list[dict[str, object]]) -> bytes:
    import datetime as dt

    items = []
    for article in articles:
        published = article["published"]
        assert isinstance(published, dt.datetime)
        paragraphs = "".join(
            f"<p>{escape(p.strip())}</p>"
            for p in str(article["content"]).split("\n\n")
            if p.strip()
        )
        items.append(
            "<item>"
            f"<title>{escape(str(article['title']))}</title>"
            f"<link>https://{source}.example/{article['id']}</link>"
            f"<guid isPermaLink='false'>{article['id']}</guid>"
            f"<description>{escape(str(article['summary']))}</description>"
            f"<content:encoded><![CDATA[{paragraphs}]]></content:encoded>"
            f"<pubDate>{format_datetime(published)}</pubDate>"
            "</item>"
        )
    return (
        "<?xml version='1.0' encoding='UTF-8'?>"
        "<rss version='2.0' xmlns:content='http://purl.org/rss/1.0/modules/content/'>"
        f"<channel><title>{source}</title>{''.join(items)}</channel></rss>"
    ).encode()


def test_the_labelled_set_is_big_and_varied_enough() -> None:
    articles = yaml.safe_load(LABELLED.read_text(encoding="utf-8"))["articles"]
    assert len(articles) >= 80
    storylines = {s for a in articles for s in a["storylines"]}
    assert storylines == {"essequibo", "maduro-reward", "sky-group"}
    assert sum(1 for a in articles if not a["storylines"]) >= 30  # hard negatives


def test_the_shipped_rules_match_the_labelled_set(
    settings: Settings, feed_server: FeedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    articles = yaml.safe_load(LABELLED.read_text(encoding="utf-8"))["articles"]
    by_source: dict[str, list[dict[str, object]]] = {}
    for article in articles:
        by_source.setdefault(article["source"], []).append(article)
    feeds = []
    for source, items in sorted(by_source.items()):
        feed_server.routes[f"/{source}"] = Reply(
            200, _rss(source, items), {"Content-Type": "application/rss+xml; charset=utf-8"}
        )
        feeds.append(f"  - {{id: {source}, url: '{feed_server.url('/' + source)}'}}")
    shipped = (REPO_ROOT / "feeds.yaml").read_text(encoding="utf-8")
    storylines = shipped[shipped.index("\nstorylines:") :]
    settings.config_path.write_text("feeds:\n" + "\n".join(feeds) + storylines)
    rules = load_config(settings.config_path).storylines
    with Tracker(settings) as tracker:
        results = tracker.poll(every=True)
        assert all(r.outcome == "new" for r in results), [r.line() for r in results]
        members = {story.id: {a.id for a in tracker.story(story.id).articles} for story in rules}
    stream = {article_stream("guid", a["id"]): a for a in articles}
    rows, failures = [], []
    costs = []
    for story in rules:
        truth = {s for s, a in stream.items() if story.id in a["storylines"]}
        found = members[story.id]
        tp, fp, fn = len(truth & found), len(found - truth), len(truth - found)
        tn = len(stream) - tp - fp - fn
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / (tp + fn) if tp + fn else 1.0
        p_miss = fn / (tp + fn) if tp + fn else 0.0
        p_fa = fp / (fp + tn) if fp + tn else 0.0
        cost = p_miss + FALSE_ALARM_WEIGHT * p_fa
        costs.append(cost)
        rows.append(
            f"{story.id:<15} {tp + fn:>4} {tp:>4} {fp:>4} {fn:>4} "
            f"{precision:>9.3f} {recall:>7.3f} {cost:>7.3f}"
        )
        missed = sorted(stream[s]["id"] for s in truth - found)
        wrong = sorted(stream[s]["id"] for s in found - truth)
        if precision < MIN_PRECISION or recall < MIN_RECALL:
            failures.append(f"{story.id}: missed {missed}, wrongly matched {wrong}")
    with capsys.disabled():
        print(f"\nStoryline matching on {len(articles)} labelled articles (shipped rules)")
        print(
            f"{'storyline':<15} {'on':>4} {'tp':>4} {'fp':>4} {'fn':>4} "
            f"{'precision':>9} {'recall':>7} {'C_norm':>7}"
        )
        print("\n".join(rows))
        print(f"mean C_norm {sum(costs) / len(costs):.3f}")
    assert not failures, failures
