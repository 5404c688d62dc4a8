"""How the 1M PostgreSQL figures of docs/benchmarks.md marked ee0b6a7 were measured: the
bench's run (c7a3b78) was stopped after its floors and its schema kept; this ran on it, at
ee0b6a7, with the bench's own functions: a turn of replay and catch-up (the views the commands
read), verify, the commands, the poll rounds, then more turns (stopped before the second).

usage, from the repository's root:
    PYTHONPATH=. python docs/bench-runs/postgresql-1m-ee0b6a7.py URL TURNS JSON
URL: a postgresql:// URL whose search_path is a schema holding the 1M log."""

import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.__main__ import (
    READ_COMMANDS,
    Figure,
    _poll_rounds,
    _save,
    child,
    command,
    heavy_imports,
    machine,
)

url, turns, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
say = lambda line: print(line, flush=True)  # noqa: E731
meta = {
    "started": f"{datetime.now(UTC):%Y-%m-%d %H:%M}",
    "machine": machine(),
    "database": "PostgreSQL",
    "command": " ".join(sys.argv),
    "runs": 3,
}
figures = {}


def record(name, runs):
    figures[name] = Figure(runs)
    f = figures[name]
    rss = f", peak RSS {f.rss_mb:.0f} MB" if f.rss_mb else ""
    say(f"  {name}: {f.median:.3f} s (spread {f.spread:.3f}){rss}")
    _save(out, meta, {"1m": figures})


pairs = []


def turn():
    pairs.append((child("replay", url), child("catch-up", url)))
    replayed, caught_up = pairs[-1]
    say(
        f"  turn {len(pairs)}: replay {replayed['seconds']:.1f} s ({replayed['rss_mb']:.0f} MB), "
        f"catch-up {caught_up['seconds']:.1f} s ({caught_up['rss_mb']:.0f} MB)"
    )
    record("ours: replay", [p[0] for p in pairs])
    record("ours: catch-up", [p[1] for p in pairs])


turn()  # the views every command below reads
record("ours: verify", [child("verify", url) for _ in range(3)])
record("ours: tracker --version", [command(["--version"], url) for _ in range(5)])
for args in READ_COMMANDS.values():
    record(f"ours: tracker {' '.join(args)}", [command(args, url) for _ in range(5)])
figures["imports"] = Figure(
    [{"seconds": 0.0, **{n: heavy_imports(a, url) for n, a in READ_COMMANDS.items()}}]
)
with tempfile.TemporaryDirectory() as folder:
    _poll_rounds(url, 3, Path(folder), figures, say)
_save(out, meta, {"1m": figures})
for _ in range(turns - 1):
    turn()
say("done")
