"""`tracker story` at 1M events beside `tracker --version`, with and without its digest.

A targeted run of the story target alone (the whole bench takes over an hour here): builds the
bench's 1M history in a PostgreSQL schema of its own (or a SQLite file), replays the views (which
digests the storylines), then times whole processes in turns: `tracker --version`, `tracker
story essequibo` reading the digest, and the same with every digest marked as another version's
(so that story sums the members, as before digests). Run from a checkout, in its venv:

    python docs/bench-runs/story-1m.py postgresql://postgres@127.0.0.1:5432/test [EVENTS]
    python docs/bench-runs/story-1m.py sqlite:////tmp/story-1m.db [EVENTS]

With --reuse after the URL, the history an earlier run built is timed again, not rebuilt.
"""

from __future__ import annotations

import compileall
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from tracker.stories import DIGEST_VERSION

REPO = Path(__file__).resolve().parents[2]
RUNS = 7


def main() -> None:
    reuse = "--reuse" in sys.argv
    arguments = [a for a in sys.argv[1:] if a != "--reuse"]
    base, events = arguments[0], int(arguments[1]) if len(arguments) > 1 else 1_000_000
    compileall.compile_dir(REPO / "src", quiet=1)
    postgres = base.startswith("postgresql")
    url = f"{base}?options=-csearch_path%3Dstory1m" if postgres else base
    if postgres and not reuse:
        admin = sa.create_engine(sa.engine.make_url(base).set(drivername="postgresql+psycopg"))
        with admin.begin() as connection:
            connection.exec_driver_sql("DROP SCHEMA IF EXISTS story1m CASCADE")
            connection.exec_driver_sql("CREATE SCHEMA story1m")
    elif not reuse:
        database = Path(sa.engine.make_url(base).database or "")
        for leftover in database.parent.glob(f"{database.name}*"):
            leftover.unlink()
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'src'}"}
    for kind, *args in () if reuse else (("build", str(events)), ("replay",)):
        done = subprocess.run(
            [sys.executable, "-m", "bench.child", kind, url, *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        print(kind, done.stdout.strip()[:200], flush=True)
    env["TRACKER_DATABASE_URL"] = url
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))

    def timed(*args: str) -> float:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "tracker", *args], env=env, check=True, capture_output=True
        )
        return time.perf_counter() - started

    def unset_digests(version: int) -> None:
        with engine.begin() as connection:  # the table itself: SQLite's views are read-only
            generation = connection.exec_driver_sql(
                "SELECT generation FROM projections WHERE name = 'storylines'"
            ).scalar()
            connection.exec_driver_sql(
                f"UPDATE storyline_digests__g{generation} SET version = {version}"
            )

    times: dict[str, list[float]] = {"--version": [], "story (digest)": [], "story (summed)": []}
    for _ in range(RUNS):
        times["--version"].append(timed("--version"))
        times["story (digest)"].append(timed("story", "essequibo"))
        unset_digests(0)
        times["story (summed)"].append(timed("story", "essequibo"))
        unset_digests(DIGEST_VERSION)
    result = {
        name: {
            "median": statistics.median(values),
            "spread": max(values) - min(values),
            "runs": values,
        }
        for name, values in times.items()
    }
    for name, figure in result.items():
        print(f"{name}: {figure['median']:.3f} s (spread {figure['spread']:.3f})")
    version = result["--version"]["median"]
    for name in ("story (digest)", "story (summed)"):
        print(f"{name} - --version: {1000 * (result[name]['median'] - version):+.0f} ms")
    print(json.dumps({"events": events, "database": base.split(":")[0], **result}))


if __name__ == "__main__":
    main()
