"""The `tracker` commands that read and rebuild the views: story, stories, article, replay,
status, demo. A thin layer like tracker.cli, whose group they join."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

import click

from tracker.cli import (
    _tracker,
    _until_reader_leaves,
    cli,
    config_option,
    database_url_option,
    json_option,
)
from tracker.render import TIMELINE_ROWS, article_lines, status_lines, stories_lines, story_lines
from tracker.service import Tracker
from tracker.terminal import printable


class _Moment(click.ParamType):  # type: ignore[type-arg]
    """An ISO 8601 date or date and time; UTC unless it gives an offset."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{text!r} is not an ISO 8601 date or time "
                "(e.g. 2025-08-07, 2025-08-07T18:05, 2025-08-07T18:05:00-04:00)",
                param,
                ctx,
            )
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@cli.command()
@click.argument("storyline_id", metavar="ID")
@click.option(
    "--as-of",
    type=_Moment(),
    help="Show it as the log knew it at TIME (ISO 8601; UTC unless an offset is given; a "
    "date alone means its midnight).",
)
@click.option(
    "--as-of-position",
    type=click.IntRange(min=0),
    metavar="N",
    help="Show it as the log knew it at position N.",
)
@click.option(
    "--include",
    multiple=True,
    metavar="ARTICLE",
    help="Pin an article (id or URL) to the storyline, whatever the rules say. Repeatable.",
)
@click.option(
    "--exclude",
    multiple=True,
    metavar="ARTICLE",
    help="Keep an article (id or URL) out of the storyline, whatever the rules say. Repeatable.",
)
@click.option(
    "--reset",
    multiple=True,
    metavar="ARTICLE",
    help="Withdraw an earlier --include or --exclude: the rules decide again. Repeatable.",
)
@json_option
@database_url_option
def story(
    storyline_id: str,
    as_of: datetime | None,
    as_of_position: int | None,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    reset: tuple[str, ...],
    as_json: bool,
    database_url: str | None,
) -> None:
    """Show where a storyline stands: its span, sources, a short summary, key figures and how
    they changed, a timeline (revised articles marked) and the people, places and
    organisations named.

    Built from the log; --as-of and --as-of-position show it as it was known then (articles,
    revisions and rule changes recorded later are left out). --include, --exclude and --reset
    record your curation as events, which beat the rules from then on.

    With --json, prints one object: id, title, article_count, first_seen, last_updated,
    sources, summary, figures, figure_changes, articles, entities, per_day, rules, position,
    as_of (see the README).

    \b
    Examples:
      tracker story essequibo
      tracker story maduro-reward --as-of 2025-08-01 --json
      tracker story sky-group --include https://www.upi.com/Top_News/US/2025/08/15/sky/123/
    """
    curating = include or exclude or reset
    if curating and (as_of is not None or as_of_position is not None):
        raise click.UsageError("curation changes the storyline now: give it without --as-of")
    if as_of is not None and as_of_position is not None:
        raise click.UsageError("give --as-of or --as-of-position, not both")
    with _tracker(database_url) as tracker, _until_reader_leaves():
        if curating:
            for line in tracker.curate(storyline_id, include, exclude, reset):
                click.echo(printable(line), err=True)
            tracker.catch_up()
        # The terminal shows a storyline's newest articles only, so only those are read.
        newest = None if as_json else TIMELINE_ROWS
        found = tracker.story(storyline_id, as_of, as_of_position, newest=newest)
        if as_of_position is not None and as_of_position > found.position:
            click.echo(
                f"note: position {as_of_position} is past the end of the log "
                f"({found.position}): this is the log as it stands",
                err=True,
            )
        if found.as_of is None and as_of_position is None and found.position < found.head:
            click.echo(
                f"note: the views are {found.head - found.position} events behind the log "
                "(`tracker poll` and the daemon catch them up)",
                err=True,
            )
        if as_json:
            click.echo(json.dumps(found.as_json_object(), ensure_ascii=False))
        else:
            click.echo("\n".join(story_lines(found)))


@cli.command()
@json_option
@database_url_option
def stories(as_json: bool, database_url: str | None) -> None:
    """List every storyline with its article count, sources and last update.

    \b
    Examples:
      tracker stories
      tracker stories --json
    """
    with _tracker(database_url) as tracker, _until_reader_leaves():
        found = tracker.stories()
        if as_json:
            click.echo(json.dumps([s.as_json_object() for s in found], ensure_ascii=False))
        else:
            click.echo("\n".join(stories_lines(found)))


@cli.command()
@click.argument("reference", metavar="ID_OR_URL")
@json_option
@database_url_option
def article(reference: str, as_json: bool, database_url: str | None) -> None:
    """Show every version of an article, with a word-level diff between consecutive ones:
    [-removed words-] {+added words+}.

    \b
    Examples:
      tracker article article-3f2a9c0d41be6e07a5c81d92
      tracker article https://thehill.com/?p=5440418 --json
    """
    with _tracker(database_url) as tracker, _until_reader_leaves():
        found = tracker.article(reference)
        if as_json:
            click.echo(json.dumps(found.as_json_object(), ensure_ascii=False))
        else:
            click.echo("\n".join(article_lines(found)))


@cli.command()
@click.option(
    "--projection",
    "names",
    multiple=True,
    metavar="NAME",
    help="Rebuild only this projection (repeatable): articles, entities, feeds, figures, "
    "storylines.",
)
@click.option(
    "--no-config",
    is_flag=True,
    help="Do not record the storyline rules of feeds.yaml first.",
)
@json_option
@config_option
@database_url_option
def replay(
    names: tuple[str, ...],
    no_config: bool,
    as_json: bool,
    config_path: str | None,
    database_url: str | None,
) -> None:
    """Rebuild the views from the whole log into fresh tables, then swap them in at once.

    Anyone reading meanwhile (tracker story, another tool) sees the old views or the new ones,
    never a half-built one; if the replay is interrupted the old views stay as they were.
    First the storyline rules in feeds.yaml are recorded if they changed (unless --no-config),
    so after editing the rules a replay shows what they change: at the end it says, per
    storyline, which articles were added and removed.

    \b
    Examples:
      tracker replay
      tracker replay --projection storylines
    """
    with _tracker(database_url, config_path) as tracker:
        recorded: list[str] = []
        if not no_config:
            if config_path is None and not tracker.settings.config_path.exists():
                click.echo(
                    f"note: no {tracker.settings.config_path} here: the storyline rules are "
                    "the log's as they stand (--config FILE to record new ones first)",
                    err=True,
                )
            recorded = tracker.record_rules(explicit=config_path is not None)
            for storyline_id in recorded:
                click.echo(
                    f"recorded the change to storyline {storyline_id} in "
                    f"{tracker.settings.config_path}",
                    err=True,
                )
        if sys.stderr.isatty() and not as_json:
            report = _replay_with_bar(tracker, names)
        else:
            report = tracker.replay(names)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "projections": list(report.projections),
                    "events": report.events,
                    "head": report.head,
                    "seconds": round(report.seconds, 3),
                    "events_per_second": round(report.rate, 1),
                    "recorded_rules": recorded,
                    "changes": list(report.changes),
                }
            )
        )
        return
    click.echo(
        f"replayed {report.events} events into {', '.join(report.projections)} in "
        f"{report.seconds:.1f}s ({report.rate:,.0f} events/s)"
    )
    if report.changes:
        click.echo("What changed:")
        for line in report.changes:
            click.echo(f"  {printable(line)}")
    else:
        click.echo("No storyline gained or lost an article.")


def _replay_with_bar(tracker: Tracker, names: tuple[str, ...]) -> Any:
    started = time.monotonic()
    done = 0
    with click.progressbar(
        length=max(tracker.head_position(), 1),
        label="replaying",
        file=sys.stderr,
        show_eta=True,
        item_show_func=lambda rate: rate,
    ) as bar:

        def progress(count: int) -> None:
            nonlocal done
            done += count
            rate = done / max(time.monotonic() - started, 1e-6)
            bar.update(count, f"{rate:,.0f} events/s")

        return tracker.replay(names, progress)


@cli.command()
@json_option
@database_url_option
def status(as_json: bool, database_url: str | None) -> None:
    """Show each projection's checkpoint and lag behind the log, and each feed's health.

    \b
    Examples:
      tracker status
      tracker status --json
    """
    with _tracker(database_url) as tracker, _until_reader_leaves():
        found = tracker.status()
        if as_json:
            click.echo(json.dumps(_status_json(found), ensure_ascii=False))
        else:
            click.echo("\n".join(status_lines(found)))


def _status_json(found: Any) -> dict[str, Any]:
    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment is not None else None

    return {
        "database": found.database,
        "head": found.head,
        "projections": [
            {
                "name": p.name,
                "built": bool(p.generation),
                "generation": p.generation,
                "position": p.position,
                "lag": p.lag,
                "version": p.version,
                "built_at": iso(p.built_at),
                "updated_at": iso(p.updated_at),
            }
            for p in found.projections
        ],
        "feeds": [
            {
                "id": f.id,
                "title": f.title,
                "url": f.url,
                "state": f.state,
                "since": iso(f.since),
                "last_error": f.last_error,
                "article_count": f.article_count,
                "last_success_at": iso(f.last_success_at),
                "last_checked_at": iso(f.last_checked_at),
                "next_due_at": iso(f.next_due_at),
            }
            for f in found.feeds
        ],
    }


@cli.command()
@click.option(
    "--db",
    "database",
    type=click.Path(dir_okay=False),
    default="tracker-demo.db",
    show_default=True,
    metavar="FILE",
    help="The SQLite file to write; an existing demo database is started afresh, any other "
    "file is left alone.",
)
def demo(database: str) -> None:
    """Try tracker with no network: serve bundled sample feeds of three outlets on 127.0.0.1,
    poll them twice with the daemon's own code (one article is edited in between), and show
    the Essequibo storyline.

    The database it writes stays, so you can go on with tracker events, story, replay and
    time travel on it; it says how at the end.

    \b
    Examples:
      tracker demo
      tracker demo --db /tmp/demo.db
    """
    from pathlib import Path

    from tracker import demo as sample

    path = Path(database)
    result = sample.run(path, say=lambda line: click.echo(printable(line)))
    with _tracker(result.database_url) as tracker:
        found = tracker.story("essequibo", newest=TIMELINE_ROWS)
    click.echo("")
    click.echo("$ tracker story essequibo")
    click.echo("\n".join(story_lines(found)))
    url = result.database_url
    click.echo("")
    click.echo(f"The demo's log is in {path}. To go on with it:")
    steps = [
        f"export TRACKER_DATABASE_URL={url}",
        "tracker stories",
        "tracker story maduro-reward",
        "tracker events --limit 20",
    ]
    if result.edited_article:
        steps.append(f"tracker article {result.edited_article}    # the article edited in round 2")
    if result.first_round_time is not None:
        moment = result.first_round_time.strftime("%Y-%m-%dT%H:%M:%SZ")
        steps.append(f"tracker story maduro-reward --as-of {moment}    # before round 2")
    steps.append(f"tracker story maduro-reward --as-of-position {result.first_round_position}")
    steps += ["tracker replay", "tracker status", "tracker verify"]
    for step in steps:
        click.echo(f"  {step}")
