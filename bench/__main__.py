"""python -m bench: tracker's speed and memory beside the floor and the best Python peer.

For each size (events in the log) it builds a seeded history through the real store, then
measures, each in a process of its own (for its peak RSS), `--runs` times:

    floor   the same rows inserted by the bare driver (sqlite3 executemany, PostgreSQL COPY);
            an ordered scan of the events with every payload decoded; feedparser's own parse
            of the feeds a poll round fetches, and the bare insert of what that round recorded
    peer    the eventsourcing library's application recorder appending the same polls (one
            transaction each) and reading them back through its notification log
    ours    append (one transaction per poll), replay of all projections, catch-up of the same
            events, verify, `tracker story`, `stories`, `events --limit 20` and `--version` as
            whole processes, a poll round of 200 changed feeds of 50 items and one of 200
            unchanged feeds (all 304)

It prints a table of medians with their spread, and with --output writes it to a Markdown file
with the targets and whether each is met (docs/benchmarks.md), and with --plot a PNG of time
against events. See bench/README.md.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}
HEAVY_IMPORTS = ("feedparser", "httpx", "apscheduler", "alembic")
READ_COMMANDS = {
    "story": ["story", "essequibo"],
    "stories": ["stories"],
    "events": ["events", "--limit", "20"],
    "help": ["--help"],
}
# Building a history, for ours and for the peer, is repeated `--runs` times up to this size;
# above it once (a million events through each, three times over, would take hours).
REPEAT_BUILDS_UP_TO = 100_000


@dataclass
class Figure:
    """One measurement's runs, each what the child process reported (seconds, rss_mb, ...)."""

    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def seconds(self) -> list[float]:
        return [float(run["seconds"]) for run in self.runs]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> float:
        return max(self.seconds) - min(self.seconds)

    @property
    def rss_mb(self) -> float:
        return max(float(run.get("rss_mb", 0)) for run in self.runs)


Figures = dict[str, Figure]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "src"), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def child(kind: str, *args: str) -> dict[str, Any]:
    """Run one measurement in a fresh process (bench/child.py) and return what it reported."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.child", kind, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(),
    )
    if result.returncode != 0:
        raise SystemExit(f"bench: {kind} failed:\n{result.stderr.strip()[-3000:]}")
    reported: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return reported


def command(args: list[str], url: str) -> dict[str, Any]:
    """A tracker command as a user runs it: a whole process, timed from outside."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "tracker", *args],
        capture_output=True,
        cwd=REPO,
        env=_env(TRACKER_DATABASE_URL=url),
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"bench: tracker {' '.join(args)} failed: {result.stderr[-800:]!r}")
    return {"seconds": seconds}


def heavy_imports(args: list[str], url: str) -> list[str]:
    """Which of the heavy libraries a command imports (python -X importtime)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tracker", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(TRACKER_DATABASE_URL=url),
    )
    found = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if "|" in line
    }
    return sorted(found & set(HEAVY_IMPORTS))


@contextmanager
def database(postgres: str | None, label: str, folder: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file in `folder`, or a schema of PostgreSQL."""
    if postgres is None:
        path = folder / f"bench-{label}-{uuid.uuid4().hex[:6]}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            for leftover in folder.glob(f"{path.stem}*"):
                leftover.unlink()
        return
    import sqlalchemy as sa

    schema = f"bench_{label}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(sa.engine.make_url(postgres).set(drivername="postgresql+psycopg"))
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = sa.engine.make_url(postgres).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def measure(
    size: int, postgres: str | None, runs: int, folder: Path, say: Callable[[str], None]
) -> Figures:
    figures: Figures = {}

    def record(name: str, run: Callable[[int], dict[str, Any]], times: int = runs) -> None:
        figure = figures[name] = Figure([run(n) for n in range(times)])
        rss = f", peak RSS {figure.rss_mb:.0f} MB" if figure.rss_mb else ""
        say(f"  {name}: {figure.median:.3f} s (spread {figure.spread:.3f}){rss}")

    builds = runs if size <= REPEAT_BUILDS_UP_TO else 1
    with database(postgres, f"n{size}", folder) as url:
        say(f"{size:,} events, {'PostgreSQL' if postgres else 'SQLite'}")

        def build(run: int) -> dict[str, Any]:
            if run == 0:
                return child("build", url, str(size))  # the history every figure reads
            with database(postgres, f"scratch{run}", folder) as scratch:
                return child("build", scratch, str(size))

        record("ours: append, one transaction per poll", build, builds)
        if postgres is None:
            # The peer's SQLite commits are synced to disk (synchronous=FULL, SQLite's default);
            # tracker's are not (NORMAL, see README). This figure compares like with like.
            def durable(run: int) -> dict[str, Any]:
                with database(None, f"full{run}", folder) as scratch:
                    return child("build", scratch, str(size), "FULL")

            record("ours: append, synchronous=FULL as the peer", durable, builds)
        record(
            "peer: eventsourcing append",
            lambda n: child("peer-append", url, str(size), str(n)),
            builds,
        )
        record("peer: eventsourcing read", lambda n: child("peer-read", url, "0"))
        record("floor: insert (sqlite3 executemany / COPY)", lambda n: child("floor-insert", url))
        record("floor: scan and decode", lambda n: child("floor-scan", url))
        # Replay and catch-up taken in turns, so that a burst of load elsewhere on the machine
        # falls on both rather than on one of the two being compared.
        turns = [(child("replay", url), child("catch-up", url)) for _ in range(runs)]
        record("ours: replay", lambda n: turns[n][0])
        record("ours: catch-up", lambda n: turns[n][1])
        record("ours: verify", lambda n: child("verify", url))
        record("ours: tracker --version", lambda n: command(["--version"], url), runs + 2)
        for args in READ_COMMANDS.values():
            record(f"ours: tracker {' '.join(args)}", lambda n, a=args: command(a, url), runs + 2)  # type: ignore[misc]
        figures["imports"] = Figure(
            [{"seconds": 0.0, **{n: heavy_imports(a, url) for n, a in READ_COMMANDS.items()}}]
        )
        _poll_rounds(url, runs, folder, figures, say)
    return figures


def _poll_rounds(
    url: str, runs: int, folder: Path, figures: Figures, say: Callable[[str], None]
) -> None:
    from bench.feeds import FeedServer

    server = FeedServer()
    names = (
        "ours: poll round, 200 changed feeds",
        "ours: CPU time of that round, parse workers included (their peak RSS)",
        "ours: catch-up after that round",
        "floor: feedparser parse of those feeds",
        "floor: insert of what that round recorded",
        "ours: poll round, 200 unchanged feeds (304)",
    )
    for name in names:
        figures[name] = Figure()
    try:
        config = folder / "bench-feeds.yaml"
        server.config(config)
        for run in range(runs):
            server.round = run + 1
            bodies = folder / f"round-{run + 1}"
            server.write_round(bodies)
            polled = child("poll", url, str(config))
            figures[names[0]].runs.append(polled)
            cpu = {"seconds": polled["cpu_seconds"], "rss_mb": polled["workers_rss_mb"]}
            figures[names[1]].runs.append(cpu)
            figures[names[2]].runs.append({"seconds": polled["catch_up_seconds"]})
            figures[names[3]].runs.append(child("parse", str(bodies)))
            raw = child("floor-insert", url, str(polled["first"]), str(polled["last"]))
            figures[names[4]].runs.append(raw)
            figures[names[5]].runs.append(child("poll", url, str(config)))
            shutil.rmtree(bodies)
    finally:
        server.close()
    for name in names:
        say(f"  {name}: {figures[name].median:.3f} s (spread {figures[name].spread:.3f})")


# -- the report ------------------------------------------------------------------------------


def _cell(figure: Figure | None) -> str:
    if figure is None or not figure.runs:
        return "-"
    return f"{figure.median:.3f} ±{figure.spread:.3f}"


def _ratio(a: Figure | None, b: Figure | None) -> float | None:
    if a is None or b is None or not a.runs or not b.runs or b.median == 0:
        return None
    return a.median / b.median


def targets(by_size: dict[str, Figures]) -> list[tuple[str, str, bool | None]]:
    """(target, what was measured, met?) for each of issue #5's targets."""
    rows: list[tuple[str, str, bool | None]] = []
    for label, figures in by_size.items():
        ours = figures.get("ours: append, one transaction per poll")
        peer = figures.get("peer: eventsourcing append")
        ratio = _ratio(peer, ours)  # time ratio: peer seconds / our seconds = our speed-up
        rows.append(
            (
                f"{label}: append ≥ 1.5× eventsourcing",
                f"{ratio:.2f}×" if ratio else "-",
                ratio >= 1.5 if ratio else None,
            )
        )
        durable = _ratio(peer, figures.get("ours: append, synchronous=FULL as the peer"))
        if durable:
            rows.append(
                (
                    f"{label}: append ≥ 1.5× eventsourcing, both syncing every commit",
                    f"{durable:.2f}×",
                    durable >= 1.5,
                )
            )
        replay = _ratio(figures.get("ours: replay"), figures.get("floor: scan and decode"))
        rows.append(
            (
                f"{label}: replay ≤ 3× scan-and-decode",
                f"{replay:.1f}×" if replay else "-",
                replay <= 3 if replay else None,
            )
        )
        catch = _ratio(figures.get("ours: catch-up"), figures.get("ours: replay"))
        rows.append(
            (
                f"{label}: catch-up ≤ replay",
                f"{catch:.2f}×" if catch else "-",
                catch <= 1 if catch else None,
            )
        )
        story, bare = (
            figures.get("ours: tracker story essequibo"),
            figures.get("ours: tracker --version"),
        )
        if story and bare:
            extra = (story.median - bare.median) * 1000
            rows.append((f"{label}: story ≤ --version + 100 ms", f"{extra:+.0f} ms", extra <= 100))
        imports = figures.get("imports")
        if imports:
            heavy = {k: v for k, v in imports.runs[0].items() if k != "seconds" and v}
            rows.append(
                (
                    f"{label}: read commands import none of {', '.join(HEAVY_IMPORTS)}",
                    "none" if not heavy else json.dumps(heavy),
                    not heavy,
                )
            )
        changed = figures.get("ours: poll round, 200 changed feeds")
        parse = figures.get("floor: feedparser parse of those feeds")
        raw = figures.get("floor: insert of what that round recorded")
        if changed and parse and raw:
            budget = parse.median + raw.median
            rows.append(
                (
                    f"{label}: poll of 200 changed feeds ≤ 1.25× (parse + insert)",
                    f"{changed.median / budget:.2f}×",
                    changed.median <= 1.25 * budget,
                )
            )
        unchanged = figures.get("ours: poll round, 200 unchanged feeds (304)")
        if unchanged:
            rows.append(
                (
                    f"{label}: poll of 200 unchanged feeds < 1 s",
                    f"{unchanged.median:.2f} s",
                    unchanged.median < 1,
                )
            )
        for name in ("ours: replay", "ours: verify"):
            figure = figures.get(name)
            if figure and label == "1m":
                rows.append(
                    (
                        f"{label}: {name[6:]} peak RSS < 200 MB",
                        f"{figure.rss_mb:.0f} MB",
                        figure.rss_mb < 200,
                    )
                )
    return rows


def table(by_size: dict[str, Figures]) -> list[str]:
    labels = list(by_size)
    names = [n for n in next(iter(by_size.values())) if n != "imports"]
    lines = [
        "| measurement | "
        + " | ".join(f"{label}: s ±spread (peak RSS)" for label in labels)
        + " |",
        "|---|" + "---|" * len(labels),
    ]
    for name in names:
        cells = []
        for label in labels:
            figure = by_size[label].get(name)
            rss = f" ({figure.rss_mb:.0f} MB)" if figure is not None and figure.rss_mb else ""
            cells.append(_cell(figure) + rss)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(
        "| events in the log | "
        + " | ".join(
            str(int(by_size[label]["ours: append, one transaction per poll"].runs[0]["events"]))
            for label in labels
        )
        + " |"
    )
    return lines


# (what the ratio says, numerator, denominator): medians of the same run.
RATIOS = (
    (
        "append: eventsourcing's time ÷ ours (speed-up)",
        "peer: eventsourcing append",
        "ours: append, one transaction per poll",
    ),
    (
        "append, both syncing every commit: eventsourcing ÷ ours",
        "peer: eventsourcing append",
        "ours: append, synchronous=FULL as the peer",
    ),
    (
        "append ÷ bare driver insert of the same rows",
        "ours: append, one transaction per poll",
        "floor: insert (sqlite3 executemany / COPY)",
    ),
    ("replay ÷ scan-and-decode floor", "ours: replay", "floor: scan and decode"),
    ("catch-up ÷ replay", "ours: catch-up", "ours: replay"),
    ("verify ÷ scan-and-decode floor", "ours: verify", "floor: scan and decode"),
    (
        "eventsourcing read ÷ scan-and-decode floor",
        "peer: eventsourcing read",
        "floor: scan and decode",
    ),
    (
        "story ÷ --version (whole processes)",
        "ours: tracker story essequibo",
        "ours: tracker --version",
    ),
)


POLL_ROUND = "ours: poll round, 200 changed feeds"
POLL_CPU = "ours: CPU time of that round, parse workers included (their peak RSS)"
POLL_PARSE = "floor: feedparser parse of those feeds"
POLL_INSERT = "floor: insert of what that round recorded"


def _sum(a: Figure | None, b: Figure | None) -> Figure | None:
    """The run-by-run sum of two figures measured in the same rounds."""
    if a is None or b is None or not a.runs or not b.runs:
        return None
    return Figure([{"seconds": x + y} for x, y in zip(a.seconds, b.seconds, strict=False)])


def ratios(by_size: dict[str, Figures]) -> list[str]:
    labels = list(by_size)
    lines = ["| ratio | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for what, numerator, denominator in RATIOS:
        cells = []
        for label in labels:
            ratio = _ratio(by_size[label].get(numerator), by_size[label].get(denominator))
            cells.append(f"{ratio:.2f}×" if ratio else "-")
        if any(cell != "-" for cell in cells):
            lines.append(f"| {what} | " + " | ".join(cells) + " |")
    for what, name in (
        ("poll round of 200 changed feeds ÷ (feedparser + bare insert)", POLL_ROUND),
        ("that round's CPU time, every process ÷ (feedparser + bare insert)", POLL_CPU),
    ):
        cells = []
        for label in labels:
            figures = by_size[label]
            budget = _sum(figures.get(POLL_PARSE), figures.get(POLL_INSERT))
            ratio = _ratio(figures.get(name), budget)
            cells.append(f"{ratio:.2f}×" if ratio else "-")
        lines.append(f"| {what} | " + " | ".join(cells) + " |")
    return lines


def machine() -> str:
    import sqlalchemy

    cpus = os.cpu_count()
    return (
        f"{platform.platform()}, {cpus} CPUs, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, SQLAlchemy {sqlalchemy.__version__}"
    )


PLOTTED = (
    ("ours: replay", "o"),
    ("floor: scan and decode", "s"),
    ("ours: tracker story essequibo", "^"),
    ("ours: tracker --version", "v"),
)


def plot(runs: dict[str, dict[str, Figures]], path: Path) -> None:
    """Time against events for replay and story, beside their floors; one line style per
    database when there are several (`runs`: database name to figures by size)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5))
    styles = ("-", "--", ":")
    for (database, by_size), line in zip(runs.items(), styles, strict=False):
        events = [
            int(figures["ours: append, one transaction per poll"].runs[0]["events"])
            for figures in by_size.values()
        ]
        for number, (name, marker) in enumerate(PLOTTED):
            axis.plot(
                events,
                [figures[name].median for figures in by_size.values()],
                marker + line,
                color=f"C{number}",
                label=f"{database}: {name}" if len(runs) > 1 else name,
            )
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("events in the log")
    axis.set_ylabel("seconds (median)")
    axis.set_title("tracker: time against events in the log")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def report(meta: dict[str, Any], by_size: dict[str, Figures]) -> list[str]:
    return [
        f"Measured {meta['started']} UTC on {meta['machine']}; database: {meta['database']}.",
        f"Command: `{meta['command']}`; medians of {meta['runs']} runs "
        "(spread = slowest − fastest; peak RSS of the process that did the work).",
        "",
        *table(by_size),
        "",
        *ratios(by_size),
        "",
        "| target | measured | met |",
        "|---|---|---|",
        *(
            f"| {name} | {value} | {'yes' if met else 'no' if met is not None else '-'} |"
            for name, value, met in targets(by_size)
        ),
    ]


def _save(path: Path, meta: dict[str, Any], by_size: dict[str, Figures]) -> None:
    sizes = {label: {n: f.runs for n, f in figures.items()} for label, figures in by_size.items()}
    path.write_text(json.dumps({"meta": meta, "sizes": sizes}, indent=1), encoding="utf-8")


def _load(path: Path) -> tuple[dict[str, Any], dict[str, Figures]]:
    saved = json.loads(path.read_text(encoding="utf-8"))
    sizes = {
        label: {n: Figure(runs) for n, runs in figures.items()}
        for label, figures in saved["sizes"].items()
    }
    return saved["meta"], sizes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10k,100k,1m", help="comma-separated: 10k, 100k, 1m")
    parser.add_argument(
        "--database-url",
        help="postgresql://USER@HOST/DB to measure PostgreSQL (a schema of its own per size); "
        "SQLite files in a temporary folder by default",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (default 3)")
    parser.add_argument("--output", type=Path, help="write the table and targets here (Markdown)")
    parser.add_argument("--plot", type=Path, help="write a PNG of time against events here")
    parser.add_argument(
        "--json", type=Path, help="write every run's figures here (after each size, as it goes)"
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        action="append",
        metavar="JSON",
        help="measure nothing: write --output and --plot from a file --json wrote; given "
        "twice (a SQLite run and a PostgreSQL one), the plot shows both and --output the first",
    )
    args = parser.parse_args(argv)
    sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size {', '.join(unknown)} (sizes: {', '.join(SIZES)})")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.from_json:
        if not (args.output or args.plot):
            parser.error("--from-json needs --output FILE and/or --plot FILE")
        loaded = [_load(path) for path in args.from_json]
        meta, by_size = loaded[0]
        plotted = {saved_meta["database"]: sizes for saved_meta, sizes in loaded}
    else:
        postgres = args.database_url
        if postgres is not None and not postgres.startswith("postgresql"):
            parser.error("--database-url takes a postgresql:// URL (SQLite is the default)")
        command_line = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
        meta = {
            "started": f"{datetime.now(UTC):%Y-%m-%d %H:%M}",
            "machine": machine(),
            "database": "PostgreSQL" if postgres else "SQLite",
            "command": command_line,
            "runs": args.runs,
        }
        say = lambda line: print(line, flush=True)  # noqa: E731
        # Whole commands are timed as users run them, from compiled modules: without this, a
        # shell with PYTHONDONTWRITEBYTECODE set would compile tracker again in every process.
        compileall.compile_dir(REPO / "src", quiet=1)
        by_size = {}
        with tempfile.TemporaryDirectory(prefix="tracker-bench-") as folder:
            for label in sizes:
                by_size[label] = measure(SIZES[label], postgres, args.runs, Path(folder), say)
                if args.json:
                    _save(args.json, meta, by_size)
    lines = report(meta, by_size)
    print("\n".join(lines))
    if args.output:
        args.output.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if args.plot:
        plot(plotted if args.from_json else {meta["database"]: by_size}, args.plot)


if __name__ == "__main__":
    main()
