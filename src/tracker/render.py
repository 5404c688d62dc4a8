"""Views as text for a terminal: what `tracker story`, `stories`, `status` and `article` print.

Every piece of text that came from a feed goes through `printable`, so a headline cannot drive
the terminal (escape sequences, bidirectional overrides).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime

from tracker.diffing import render as render_diff
from tracker.history import ArticleHistory
from tracker.status import Status
from tracker.stories import Story, StorylineSummary
from tracker.terminal import clip, printable

WIDTH = 100
TIMELINE_ROWS = 40


def _day(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d") if moment is not None else "-"


def _minute(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ") if moment is not None else "-"


def _wrapped(text: str, indent: str) -> list[str]:
    return textwrap.wrap(
        printable(text), WIDTH, initial_indent=indent, subsequent_indent=indent + "  "
    )


def story_lines(story: Story) -> list[str]:
    titles = {source.id: source.title for source in story.sources}
    header = f"{printable(story.title)} ({story.id})"
    if story.as_of is not None:
        header += f", as the log knew it at {_minute(story.as_of)} (position {story.position})"
    elif story.past:
        header += f", as the log knew it at position {story.position}"
    elif story.position < story.head:
        header += f", as of log position {story.position} of {story.head}"
    lines = [header, "=" * min(len(header), WIDTH)]
    if not story.article_count:
        return [*lines, "No articles yet."]
    span = (
        f"{story.article_count} articles published {_day(story.first_seen)} to "
        f"{_day(story.last_published)}, from {len(story.sources)} source(s)"
    )
    if story.last_updated != story.last_published:
        span += f"; last revision recorded {_day(story.last_updated)}"
    lines.append(span)
    lines.append(
        "Sources: "
        + ", ".join(f"{printable(source.title)} ({source.count})" for source in story.sources)
    )
    if story.summary:
        lines += ["", "Summary"]
        for sentence in story.summary:
            source = titles.get(sentence.source, sentence.source)
            lines += _wrapped(
                f"- {sentence.text} ({printable(source)}, {_day(sentence.published_at)})", ""
            )
    # Figures reported more than once, or that changed: the ones worth a line.
    changes = [c for c in story.figure_changes if c.mentions > 1 or len(c.steps) > 1][:5]
    if changes:
        lines += ["", "Key figures"]
        for change in changes:
            steps = " -> ".join(
                f"{step.text} ({_day(step.first_reported)}, "
                f"{printable(titles.get(step.source, step.source))})"
                for step in change.steps
            )
            lines += _wrapped(f"- {change.label} ({change.mentions} mentions): {steps}", "")
    lines += ["", "Timeline"]
    shown = story.articles[-TIMELINE_ROWS:]
    if story.article_count > len(shown):
        lines.append(f"  ... {story.article_count - len(shown)} earlier articles")
    for article in shown:
        mark = f"  [revised {article.revisions}x]" if article.revisions else ""
        pinned = "  [pinned]" if article.matched_by == "curation" else ""
        source = clip(printable(titles.get(article.source, article.source)), 22)
        lines.append(
            f"  {_day(article.published_at)}  {source:<22}  "
            f"{clip(printable(article.title), 60)}{mark}{pinned}"
        )
    if story.entities:
        lines += ["", "Named"]
        for kind in ("person", "place", "organisation"):
            names = [e for e in story.entities if e.kind == kind]
            if names:
                listed = ", ".join(f"{printable(e.name)} ({e.count})" for e in names)
                lines += _wrapped(f"{kind.capitalize() + 's'}: {listed}", "  ")
    return lines


def stories_lines(found: Sequence[StorylineSummary]) -> list[str]:
    if not found:
        return ["No storylines yet: define them in feeds.yaml (see `tracker config check`)."]
    lines = []
    for summary in found:
        sources = ", ".join(f"{printable(s.title)} ({s.count})" for s in summary.sources)
        lines.append(
            f"{summary.id:<20} {summary.article_count:>5} articles  "
            f"last {_day(summary.last_updated)}  {printable(summary.title)}"
        )
        if sources:
            lines.append(f"{'':<20} sources: {sources}")
    return lines


def status_lines(status: Status) -> list[str]:
    lines = [f"{status.database}: {status.head} events in the log", "", "Projections"]
    for p in status.projections:
        if not p.generation:
            lines.append(f"  {p.name:<12} not built yet (run `tracker replay`)")
            continue
        lag = "up to date" if not p.lag else f"{p.lag} events behind"
        lines.append(
            f"  {p.name:<12} at position {p.position:<9} {lag:<20} "
            f"generation {p.generation}, built {_minute(p.built_at)}"
        )
    lines += ["", "Feeds"]
    if not status.feeds:
        lines.append("  none polled yet")
    for feed in status.feeds:
        error = f": {clip(printable(feed.last_error), 60)}" if feed.last_error else ""
        lines.append(
            f"  {feed.id:<22} {feed.state:<8}{error}  {feed.article_count} articles, "
            f"last success {_minute(feed.last_success_at)}, "
            f"last checked {_minute(feed.last_checked_at)}, next {_minute(feed.next_due_at)}"
        )
    return lines


def article_lines(found: ArticleHistory) -> list[str]:
    current = found.versions[-1]
    feeds = ", ".join(feed for feed, _ in found.seen_in)
    lines = [
        f"{printable(current.title)}",
        f"{found.article_id}  {printable(current.link or '(no link)')}",
        f"seen in: {feeds}; {len(found.versions)} version(s)",
    ]
    for version in found.versions:
        lines.append("")
        what = (
            f"first seen in {version.feed_id}, published {printable(version.published or '-')}"
            if version.number == 1
            else f"revised in {version.feed_id}: {', '.join(version.changed)}"
        )
        lines.append(
            f"version {version.number}  recorded {_minute(version.recorded_at)}  "
            f"position {version.position}  {what}"
        )
        if version.number == 1:
            lines += _wrapped(f"title: {version.title}", "  ")
            if version.summary:
                lines += _wrapped(f"summary: {clip(version.summary, 400)}", "  ")
            continue
        for field, pieces in version.diff.items():
            lines += _wrapped(f"{field}: {render_diff(pieces)}", "  ")
    return lines
