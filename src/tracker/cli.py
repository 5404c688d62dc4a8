"""The `tracker` command line: a thin layer that parses options, calls the facade, prints."""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from tracker import __version__
from tracker.checkpoints import checkpoint_key, read_checkpoints
from tracker.errors import ConfigError, TrackerError, UsageError
from tracker.records import RecordedEvent
from tracker.service import Tracker
from tracker.settings import (
    CONFIG_ENV,
    DATABASE_URL_ENV,
    DEFAULT_CONFIG_PATH,
    DEFAULT_DATABASE_URL,
    Settings,
)
from tracker.terminal import clip, printable

F = TypeVar("F", bound=Callable[..., Any])

database_url_option = click.option(
    "--database-url",
    envvar=DATABASE_URL_ENV,
    show_envvar=True,
    metavar="URL",
    help=f"Database to use: sqlite:///FILE or postgresql://USER@HOST/DB "
    f"[default: {DEFAULT_DATABASE_URL}]",
)
config_option = click.option(
    "--config",
    "config_path",
    envvar=CONFIG_ENV,
    show_envvar=True,
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help=f"The feeds and storylines file [default: ./{DEFAULT_CONFIG_PATH}]",
)
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON for scripts instead of text."
)


@contextmanager
def _tracker(database_url: str | None = None, config_path: str | None = None) -> Iterator[Tracker]:
    with Tracker(Settings.resolve(database_url, config_path)) as tracker:
        yield tracker


@contextmanager
def _until_reader_leaves() -> Iterator[None]:
    """End quietly, exit 0, when the reader of our output goes away (`tracker events | head`).

    click would turn the broken pipe into exit 1, which breaks `set -o pipefail` scripts.
    """
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        # Point stdout at /dev/null so that the interpreter's last flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise click.exceptions.Exit(0) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="tracker")
def cli() -> None:
    """Follow news storylines across outlets from their RSS/Atom feeds.

    Everything tracker sees is recorded as events in an append-only log (SQLite by default,
    PostgreSQL for several machines); every view is built from that log.

    \b
    Examples:
      tracker demo                     try it: sample feeds, no network needed
      tracker poll                     fetch the feeds in feeds.yaml that are due
      tracker stories                  the storylines followed, with article counts
      tracker story essequibo          where a storyline stands
      tracker events --limit 20        the first 20 events in the log
      tracker verify                   check the log's hash chain
      tracker checkpoint -o FILE       keep the chain's head outside the database
      tracker config check             check feeds.yaml
    """


@cli.group()
def db() -> None:
    """Manage the database schema.

    Every command creates the schema in an empty database by itself; an existing database is
    only moved to a new schema by `tracker db upgrade`.

    \b
    Examples:
      tracker db upgrade
      tracker db current --json
    """


@db.command("upgrade")
@database_url_option
def db_upgrade(database_url: str | None) -> None:
    """Upgrade the database schema to the one this tracker needs.

    \b
    Example:
      tracker db upgrade --database-url postgresql://tracker@db.example/tracker
    """
    with _tracker(database_url) as tracker:
        report = tracker.upgrade_database()
    if report.changed:
        click.echo(f"{report.database}: upgraded from {report.before or 'empty'} to {report.after}")
    else:
        click.echo(f"{report.database}: already at {report.after}")


@db.command("current")
@database_url_option
@json_option
def db_current(database_url: str | None, as_json: bool) -> None:
    """Show the database's schema revision and the one this tracker expects.

    \b
    Example:
      tracker db current
    """
    with _tracker(database_url) as tracker:
        revision, expected = tracker.schema_revision()
    if as_json:
        click.echo(json.dumps({"revision": revision, "expected": expected}))
    else:
        click.echo(f"revision {revision or '(empty database)'}; this tracker expects {expected}")


@cli.command()
@click.option("--stream", "stream_id", metavar="STREAM", help="Only this stream's events.")
@click.option("--type", "event_type", metavar="TYPE", help="Only events of this type.")
@click.option(
    "--since-position",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="Only events after position N.",
)
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="At most N events.")
@json_option
@database_url_option
def events(
    stream_id: str | None,
    event_type: str | None,
    since_position: int,
    limit: int | None,
    as_json: bool,
    database_url: str | None,
) -> None:
    """Show the event log, oldest first.

    With --json, prints one JSON object per line: position, id, stream, version, type,
    schema_version, recorded_at, payload, metadata.

    \b
    Examples:
      tracker events --limit 20
      tracker events --since-position 1000 --type article.revised --json
    """
    with _tracker(database_url) as tracker, _until_reader_leaves():
        found = tracker.events(
            stream_id=stream_id,
            event_type=event_type,
            after_position=since_position,
            limit=limit,
        )
        shown = 0
        for event in found:
            click.echo(json.dumps(event.as_json_object()) if as_json else _event_line(event))
            shown += 1
        if not shown and not as_json:
            click.echo("no events", err=True)


def _event_line(event: RecordedEvent) -> str:
    payload = json.dumps(event.payload, ensure_ascii=False, separators=(",", ":"))
    return "  ".join(
        [
            f"{event.position:>8}",
            event.recorded_at.strftime("%Y-%m-%d %H:%M:%SZ"),
            f"{printable(clip(event.stream_id, 40)):<40}",
            f"v{event.stream_version:<4}",
            f"{printable(clip(event.event_type, 24)):<24}",
            printable(clip(payload, 80)),
        ]
    )


@cli.command()
@click.option(
    "--feed",
    "feed_ids",
    multiple=True,
    metavar="ID",
    help="Poll this feed (repeatable), due or not, enabled or not.",
)
@click.option("--all", "every", is_flag=True, help="Poll every enabled feed, due or not.")
@json_option
@config_option
@database_url_option
def poll(
    feed_ids: tuple[str, ...],
    every: bool,
    as_json: bool,
    config_path: str | None,
    database_url: str | None,
) -> None:
    """Poll feeds once: by default every enabled feed that is due.

    Prints one line per feed: new and revised articles, unchanged, not modified, or failed
    with the reason. Exits 0 when the round ran, even if feeds failed (failures are recorded
    as data); 2 for a bad feeds.yaml or options.

    \b
    Examples:
      tracker poll
      tracker poll --feed upi-top --feed thehill-news
      tracker poll --all --json
    """
    if feed_ids and every:
        raise click.UsageError("give --feed or --all, not both")
    with _tracker(database_url, config_path) as tracker, _until_reader_leaves():
        results = tracker.poll(feed_ids, every)
        for result in results:
            click.echo(json.dumps(result.as_json_object()) if as_json else printable(result.line()))
        if not results and not as_json:
            click.echo("no feed is due (use --all to poll every feed now)", err=True)


@cli.command()
@click.option(
    "--parallel",
    type=click.IntRange(min=1, max=64),
    default=8,
    show_default=True,
    help="Fetch at most this many feeds at once.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option(
    "--stop-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="After SIGTERM, the longest the daemon waits for its jobs to end (polls finish or "
    "are cancelled, catch-ups stop at a batch); past it, it exits without whatever is still "
    "blocked, and that rolls back (the feeds are polled again later).",
)
@click.option(
    "--digest-every",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How often the storylines that changed are digested (their figure changes and names "
    "summed once, for `tracker story` to read); until then `story` sums them itself.",
)
@config_option
@database_url_option
def daemon(
    parallel: int,
    log_level: str,
    stop_timeout: float,
    digest_every: float,
    config_path: str | None,
    database_url: str | None,
) -> None:
    """Poll feeds on their intervals until stopped (runs in the foreground).

    Each enabled feed in feeds.yaml is polled on its own interval, with jitter; one log line
    per poll goes to stderr. Several daemons can share one PostgreSQL database: each feed is
    polled by one of them per interval. SIGHUP re-reads feeds.yaml; SIGTERM or Ctrl-C lets
    the polls in flight finish and commit (see --stop-timeout), then exits 0.

    \b
    Examples:
      tracker daemon
      tracker daemon --database-url postgresql://tracker@db.example/tracker --parallel 16
    """
    import logging

    from tracker.daemon import Daemon  # APScheduler only for the daemon

    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)sZ %(levelname)s %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    logging.Formatter.converter = time.gmtime
    # Our own lines at the chosen level; the libraries' chatter (a line per job run, per HTTP
    # request, per migration step) only when something is wrong.
    logging.getLogger("tracker").setLevel(getattr(logging, log_level.upper()))
    with _tracker(database_url, config_path) as tracker:
        poller = Daemon(
            tracker, parallelism=parallel, stop_timeout=stop_timeout, digest_every=digest_every
        )
        code = poller.run()
    if poller.abandoned:
        # Interpreter exit joins the pool's threads, and these are blocked: leave without them.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise click.exceptions.Exit(code)


@cli.command()
@click.option(
    "--checkpoints",
    "checkpoint_files",
    multiple=True,
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Also check the log against the checkpoints in FILE (see `tracker checkpoint`); "
    "may be given more than once.",
)
@json_option
@database_url_option
def verify(checkpoint_files: tuple[str, ...], as_json: bool, database_url: str | None) -> None:
    """Check the log's hash chain from the first event to the last.

    Each event's hash covers its content and the previous event's hash, so an event changed or
    reordered behind tracker's back, or deleted from before the newest, breaks the chain there.
    The chain alone cannot catch a rewrite that recomputes every later hash, nor the newest
    events deleted: checkpoints kept elsewhere (--checkpoints) catch both. Exits 1 if the log
    fails, naming the first bad position.

    \b
    Examples:
      tracker verify
      tracker verify --checkpoints /mnt/elsewhere/tracker-checkpoints.jsonl
    """
    key = checkpoint_key()
    checkpoints = [found for path in checkpoint_files for found in read_checkpoints(path, key)]
    with (
        _tracker(database_url) as tracker,
        _progress(tracker.head_position(), "verifying", as_json) as progress,
    ):
        report = tracker.verify(progress=progress, checkpoints=checkpoints)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "checked": report.checked,
                    "checkpoints": len(checkpoints),
                    "first_bad_position": report.first_bad_position,
                    "problem": report.problem,
                }
            )
        )
    elif report.ok:
        count = len(checkpoints)
        matched = f", and matches {count} checkpoint{'s' * (count != 1)}" if count else ""
        click.echo(f"verified {report.checked} events: the hash chain is intact{matched}")
    else:
        click.echo(
            f"chain broken at position {report.first_bad_position}: {report.problem} "
            f"({report.checked} events before it verified)"
        )
    if not report.ok:
        raise SystemExit(1)


@cli.command()
@click.option(
    "--output",
    "-o",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append the checkpoint to FILE (one JSON object per line), verifying the log only on "
    "from FILE's newest checkpoint; without it, print the checkpoint.",
)
@json_option
@database_url_option
def checkpoint(output: Path | None, as_json: bool, database_url: str | None) -> None:
    """Record where the log's hash chain stands, to keep outside the database.

    A checkpoint is the position and hash of the newest event. Kept where whoever can write to
    the database cannot reach it, it lets `tracker verify --checkpoints FILE` catch what the
    chain alone cannot: a log rewritten from some event on with every later hash recomputed,
    or its newest events deleted. The chain is verified before a checkpoint is taken. With
    TRACKER_CHECKPOINT_KEY set, checkpoints are signed (HMAC-SHA256) and verify then refuses
    any that is unsigned or signed with another key.

    \b
    Examples:
      tracker checkpoint --output /mnt/elsewhere/tracker-checkpoints.jsonl   # daily, from cron
      tracker checkpoint > head.json
    """
    key = checkpoint_key()
    previous = None
    if output is not None and output.exists() and output.stat().st_size:
        previous = max(read_checkpoints(output, key), key=lambda found: found.position)
    with _tracker(database_url) as tracker:
        to_check = tracker.head_position() - (previous.position if previous else 0)
        with _progress(to_check, "verifying", as_json or output is None) as progress:
            taken = tracker.checkpoint(key, previous, progress)
    if output is None:
        click.echo(taken.line())
        return
    try:
        with output.open("a", encoding="utf-8") as kept:
            kept.write(taken.line() + "\n")
            kept.flush()
            os.fsync(kept.fileno())
    except OSError as error:
        raise UsageError(f"{output}: cannot write the checkpoint: {error.strerror}") from None
    if as_json:
        click.echo(taken.line())
    else:
        signed = "signed, " if taken.signature else ""
        click.echo(
            f"checkpoint at position {taken.position} ({signed}{taken.hash[:12]}…) "
            f"appended to {output}"
        )


@contextmanager
def _progress(length: int, label: str, quiet: bool) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on a terminal's stderr, none for scripts."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        yield bar.update


@cli.group()
def config() -> None:
    """Check the feeds and storylines file (feeds.yaml).

    \b
    Example:
      tracker config check
    """


@config.command("check")
@config_option
@json_option
def config_check(config_path: str | None, as_json: bool) -> None:
    """Check feeds.yaml and summarise it; print one line per problem and exit 2 if any.

    With --json, prints the checked feeds and storylines, or {"ok": false, "problems": [...]}.

    \b
    Example:
      tracker config check --config /etc/tracker/feeds.yaml
    """
    try:
        with _tracker(config_path=config_path) as tracker:
            loaded = tracker.check_config()
    except ConfigError as error:
        if not as_json:
            raise
        click.echo(json.dumps({"ok": False, "problems": error.problems}))
        raise click.exceptions.Exit(error.exit_code) from None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": True,
                    "path": str(loaded.path),
                    "feeds": [
                        {
                            "id": feed.id,
                            "title": feed.title,
                            "url": feed.url,
                            "interval_seconds": feed.interval.total_seconds(),
                            "enabled": feed.enabled,
                        }
                        for feed in loaded.feeds
                    ],
                    "storylines": [
                        {
                            "id": story.id,
                            "title": story.title,
                            "match": {
                                "all": list(story.match.all),
                                "any": list(story.match.any),
                                "none": list(story.match.none),
                            },
                        }
                        for story in loaded.storylines
                    ],
                }
            )
        )
        return
    enabled = sum(feed.enabled for feed in loaded.feeds)
    click.echo(
        f"{loaded.path}: OK, {len(loaded.feeds)} feeds ({enabled} enabled), "
        f"{len(loaded.storylines)} storylines"
    )
    if not enabled:
        click.echo(
            f"warning: {loaded.path}: no enabled feeds, so there is nothing to poll", err=True
        )


# The storyline and view commands live beside this module; importing it registers them.
from tracker import cli_views  # noqa: E402,F401


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning every TrackerError into one line and an exit code."""
    # Everything imported so far lives as long as the process: kept out of the collector's
    # reach, a full collection does not walk it again, which took about 50 ms of every short
    # command's 250. Again at the end, for what the command imported and made: the process's
    # exit frees it all, and the collection at exit would walk it for nothing (10 ms of a
    # story on PostgreSQL, whose driver is imported only then).
    gc.freeze()
    code = _run(argv)
    gc.freeze()
    sys.exit(code)


def _run(argv: list[str] | None) -> int:
    try:
        result = cli.main(args=argv, prog_name="tracker", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as error:
        # Bare `tracker`: help is what was asked for.
        click.echo(error.ctx.get_help())
        return 0
    except click.ClickException as error:
        context = getattr(error, "ctx", None)
        hint = f" (see '{context.command_path} --help')" if context is not None else ""
        click.echo(f"error: {printable(error.format_message())}{hint}", err=True)
        return error.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        return 130
    except ConfigError as error:
        for problem in error.problems:
            click.echo(printable(problem), err=True)
        return error.exit_code
    except TrackerError as error:
        click.echo(f"error: {printable(str(error))}", err=True)
        return error.exit_code
    return result if isinstance(result, int) else 0
