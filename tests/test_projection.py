"""The projector framework on both databases: exactly once, replay equals catch-up in any
chunking, deterministic whatever the hash seed, atomic swap under a reader, crash safety."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from helpers import REPO_ROOT, clean_env, run_tracker
from histories import ESSEQUIBO, RandomHistory, append, dump, published
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracker.database import create_engine, ensure_schema
from tracker.events.storylines import StorylineDefined
from tracker.eventstore import EventStore
from tracker.projection import catch_up, read_checkpoints
from tracker.rebuild import replay
from tracker.schema import projections
from tracker.views import PROJECTORS

WORKERS = Path(__file__).parent / "workers"


# The feeds view's columns: feed_id first, article_count tenth.
ARTICLE_COUNT = 9


def test_catch_up_applies_each_event_once_and_passes_over_the_rest(store: EventStore) -> None:
    history = RandomHistory(seed=1, size=60)
    append(store, history.events)
    report = catch_up(store, PROJECTORS)
    assert report.head == store.head_position()
    first = dump(store)
    # Nothing new: a second catch-up changes nothing, and every checkpoint is at the head.
    again = catch_up(store, PROJECTORS)
    assert again.applied == 0
    assert dump(store) == first
    checkpoints = read_checkpoints(store.engine)
    assert {c.position for c in checkpoints.values()} == {store.head_position()}
    # Each publication counted once per feed it was seen in.
    published_events = [e for e in store.read_all() if e.event_type == "article.published"]
    assert sum(row[ARTICLE_COUNT] for row in first["feeds"]) >= len(published_events)
    assert len(first["articles"]) == len(published_events)


def test_replay_gives_the_same_views_as_catch_up_and_as_another_replay(store: EventStore) -> None:
    history = RandomHistory(seed=7, size=150)
    half = len(history.events) // 2
    append(store, history.events[:half])
    catch_up(store, PROJECTORS, batch_size=13)
    append(store, history.events[half:])
    catch_up(store, PROJECTORS, batch_size=29)
    incremental = dump(store)
    assert incremental["storyline_articles"], "the history should make some members"
    replay(store, PROJECTORS, batch_size=50)
    replayed = dump(store)
    replay(store, PROJECTORS, batch_size=7)
    assert replayed == incremental
    assert dump(store) == replayed


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 10_000),
    cuts=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    batch=st.integers(1, 25),
)
def test_any_chunking_of_catch_up_equals_one_replay(
    tmp_path_factory: pytest.TempPathFactory, seed: int, cuts: list[int], batch: int
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path_factory.mktemp('chunks') / 't.db'}")
    ensure_schema(engine)
    store = EventStore(engine)
    try:
        events = RandomHistory(seed=seed, size=80).events
        start = 0
        for cut in cuts:  # append a piece, catch up, append the next ...
            append(store, events[start : start + cut])
            start += cut
            catch_up(store, PROJECTORS, batch_size=batch)
        if start < len(events):
            append(store, events[start:])
        catch_up(store, PROJECTORS, batch_size=batch)
        incremental = dump(store)
        replay(store, PROJECTORS)
        assert dump(store) == incremental
    finally:
        engine.dispose()


def test_replay_is_the_same_whatever_the_hash_seed(tmp_path: Path) -> None:
    source = tmp_path / "source.db"
    engine = create_engine(f"sqlite:///{source}")
    ensure_schema(engine)
    store = EventStore(engine)
    append(store, RandomHistory(seed=3, size=150).events)
    catch_up(store, PROJECTORS)
    incremental = dump(store)
    engine.dispose()
    dumps = []
    for seed in ("1", "2", "12345"):
        copy = tmp_path / f"seed{seed}.db"
        shutil.copy(source, copy)
        result = run_tracker(
            "replay",
            "--no-config",
            "--database-url",
            f"sqlite:///{copy}",
            env={"PYTHONHASHSEED": seed},
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        replayed = create_engine(f"sqlite:///{copy}")
        dumps.append(dump(EventStore(replayed)))
        replayed.dispose()
    assert dumps[0] == dumps[1] == dumps[2] == incremental


def test_replay_reports_what_changed_per_storyline(store: EventStore) -> None:
    append(store, [ESSEQUIBO])
    append(
        store,
        [
            published("article-a", "upi-top", "Maduro vows to recover the Essequibo"),
            published("article-b", "upi-top", "Guyana's election nears"),
        ],
    )
    catch_up(store, PROJECTORS)
    # New rules, recorded while nothing caught up: the replay makes them take effect.
    wider = StorylineDefined("essequibo", "Essequibo dispute", any=("Essequibo", "Guyana"))
    narrower = StorylineDefined("essequibo", "Essequibo dispute", any=("Guyana",))
    append(store, [wider])
    report = replay(store, PROJECTORS)
    assert report.changes == (
        "essequibo: 1 article(s) added, 0 removed (2 now)",
        "  + Guyana's election nears (article-b)",
    )
    append(store, [narrower])
    report = replay(store, PROJECTORS)
    assert report.changes[0] == "essequibo: 0 article(s) added, 1 removed (1 now)"
    assert replay(store, PROJECTORS).changes == ()


def test_replay_lists_the_first_twenty_articles_a_storyline_gained_and_counts_the_rest(
    store: EventStore,
) -> None:
    append(store, [ESSEQUIBO])
    append(
        store,
        [published(f"article-{n:02d}", "upi-top", f"Guyana update {n}") for n in range(25)],
    )
    catch_up(store, PROJECTORS)
    append(store, [StorylineDefined("essequibo", "Essequibo dispute", any=("Guyana",))])
    changes = replay(store, PROJECTORS).changes
    assert changes[0] == "essequibo: 25 article(s) added, 0 removed (25 now)"
    assert changes[1:3] == (
        "  + Guyana update 0 (article-00)",
        "  + Guyana update 1 (article-01)",
    )
    assert len(changes) == 22 and changes[-1] == "  + ... and 5 more"


def test_replay_drops_the_old_tables_and_points_the_sql_views_at_the_new(
    store: EventStore,
) -> None:
    append(store, [ESSEQUIBO, published("article-a", "upi-top", "Essequibo news")])
    catch_up(store, PROJECTORS)
    before = read_checkpoints(store.engine)["storylines"].generation
    replay(store, PROJECTORS)
    after = read_checkpoints(store.engine)["storylines"].generation
    assert after > before
    with store.engine.connect() as connection:
        tables = set(sa.inspect(connection).get_table_names())
        # Another tool reads the plain SQL view, whatever generation is current.
        titles = connection.execute(sa.text("SELECT title FROM articles")).scalars().all()
    assert f"storyline_articles__g{after}" in tables
    assert f"storyline_articles__g{before}" not in tables
    assert titles == ["Essequibo news"]


def test_views_built_by_an_older_projector_are_rebuilt(store: EventStore) -> None:
    append(store, [ESSEQUIBO, published("article-a", "upi-top", "Essequibo news")])
    catch_up(store, PROJECTORS)
    built = dump(store)
    with store.engine.begin() as connection:
        connection.execute(
            sa.update(projections).where(projections.c.name == "figures").values(version=0)
        )
    report = catch_up(store, PROJECTORS)
    assert report.rebuilt == ("figures",)
    assert read_checkpoints(store.engine)["figures"].version == PROJECTORS[3].version
    assert dump(store) == built


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
        cwd=REPO_ROOT,
    )


def test_catch_ups_in_several_processes_at_once_apply_each_event_once(
    database_url: str, store: EventStore
) -> None:
    history = RandomHistory(seed=11, size=400)
    append(store, history.events)
    workers = [_spawn(str(WORKERS / "catch_up.py"), database_url) for _ in range(3)]
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
    together = dump(store)
    replay(store, PROJECTORS)
    assert dump(store) == together


def _big_history(store: EventStore, articles: int) -> None:
    events = [ESSEQUIBO] + [
        published(
            f"article-{n:05d}",
            "upi-top",
            f"Essequibo report {n}" if n % 3 else f"Guyana report {n}",
            "Venezuela's claim to the region grows." if n % 3 else "Its oil output grows.",
            day=n % 365,
        )
        for n in range(articles)
    ]
    for start in range(0, len(events), 2000):
        append(store, events[start : start + 2000])


def _generation_tables(store: EventStore, generation: int) -> int:
    with store.engine.connect() as connection:
        names = sa.inspect(connection).get_table_names()
    return sum(name.endswith(f"__g{generation}") for name in names)


def test_a_replay_killed_midway_leaves_the_old_views_whole(
    database_url: str, store: EventStore
) -> None:
    # Three of replay's batches: after the first is written, two are still to come.
    _big_history(store, 12000)
    catch_up(store, PROJECTORS)
    before = dump(store)
    checkpoints = read_checkpoints(store.engine)
    building = max(c.generation for c in checkpoints.values()) + 1
    replayer = _spawn("-m", "tracker", "replay", "--no-config", "--database-url", database_url)
    # Once the new tables hold a batch's rows and more are being written, kill it there.
    _kill_when(replayer, lambda: _rows_in(store, f"articles__g{building}") > 0)
    assert read_checkpoints(store.engine) == checkpoints
    assert dump(store) == before
    story = run_tracker("story", "essequibo", "--json", "--database-url", database_url)
    assert story.returncode == 0, story.stderr
    # The next replay succeeds and clears what the dead one left.
    again = run_tracker("replay", "--no-config", "--database-url", database_url)
    assert again.returncode == 0, again.stderr
    assert _generation_tables(store, building) == 0
    assert dump(store) == before


def _rows_in(store: EventStore, table: str) -> int:
    with store.engine.connect() as connection:
        if not sa.inspect(connection).has_table(table):
            return 0
        return int(connection.exec_driver_sql(f'SELECT count(*) FROM "{table}"').scalar() or 0)


def test_a_catch_up_killed_midway_loses_nothing_and_applies_nothing_twice(
    database_url: str, store: EventStore
) -> None:
    _big_history(store, 6000)
    worker = _spawn(str(WORKERS / "catch_up.py"), database_url, "50")
    _kill_when(worker, lambda: _position(store, "storylines") > 0)
    assert read_checkpoints(store.engine)["storylines"].position < store.head_position()
    catch_up(store, PROJECTORS)
    resumed = dump(store)
    assert resumed["feeds"][0][ARTICLE_COUNT] == 6000  # each article counted once
    replay(store, PROJECTORS)
    assert dump(store) == resumed


def _kill_when(
    process: subprocess.Popen[str], ready: Callable[[], bool], settle: float = 0.0
) -> None:
    """SIGKILL `process` once `ready()` holds (and `settle` seconds more), while it still runs."""
    try:
        deadline = time.monotonic() + 60
        while not ready():
            assert process.poll() is None, "it ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(settle)
        assert process.poll() is None, "it finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def _position(store: EventStore, name: str) -> int:
    checkpoint = read_checkpoints(store.engine).get(name)
    return checkpoint.position if checkpoint is not None else 0


def test_a_reader_during_a_replay_sees_the_old_views_or_the_new(
    database_url: str, store: EventStore
) -> None:
    _big_history(store, 4000)
    catch_up(store, PROJECTORS)
    old = {row[1] for row in dump(store)["storyline_articles"]}
    # New rules that take other members, recorded but not yet applied.
    append(store, [StorylineDefined("essequibo", "Essequibo dispute", any=("Guyana",))])
    reader = _spawn(str(WORKERS / "story_reader.py"), database_url, "essequibo", "60")
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == "ready"
        replay(store, PROJECTORS)
        new = {row[1] for row in dump(store)["storyline_articles"]}
        time.sleep(0.5)  # let it read the new views too
    finally:
        reader.send_signal(signal.SIGTERM)
        out, err = reader.communicate(timeout=30)
    assert reader.returncode == 0, err
    assert old != new
    seen = [line.split() for line in out.splitlines() if line.strip()]
    assert len(seen) > 2
    expected = {(str(len(old)), _digest(old)), (str(len(new)), _digest(new))}
    assert {tuple(line) for line in seen} <= expected, "a reader saw a half-built view"
    assert tuple(seen[-1]) == (str(len(new)), _digest(new))


def _digest(ids: set[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


def test_story_reads_use_the_current_generation_after_many_replays(store: EventStore) -> None:
    append(store, [ESSEQUIBO, published("article-a", "upi-top", "Essequibo news")])
    catch_up(store, PROJECTORS)
    for _ in range(3):
        replay(store, PROJECTORS)
    assert [row[1] for row in dump(store)["storyline_articles"]] == ["article-a"]


def test_one_replay_at_a_time_and_catch_ups_leave_its_projections_alone(
    database_url: str, store: EventStore
) -> None:
    # Long enough a replay for a catch-up and a second replay to run meanwhile.
    _big_history(store, 25000)
    catch_up(store, PROJECTORS)
    before = dump(store)
    building = max(c.generation for c in read_checkpoints(store.engine).values()) + 1
    first = _spawn("-m", "tracker", "replay", "--no-config", "--database-url", database_url)
    try:
        deadline = time.monotonic() + 60
        while _generation_tables(store, building) == 0:
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        # A catch-up meanwhile skips what the replay is rebuilding, and says so.
        append(store, [published("article-new", "upi-top", "Essequibo: one more", day=3)])
        report = catch_up(store, PROJECTORS)
        assert "storylines" in report.skipped
        second = run_tracker("replay", "--no-config", "--database-url", database_url)
        assert first.poll() is None, "the first replay ended too soon to test this"
        assert second.returncode == 1
        assert "being rebuilt by another replay" in second.stderr
        out, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    after = dump(store)
    assert len(after["articles"]) == len(before["articles"]) + 1  # the swap applied it
    assert catch_up(store, PROJECTORS).applied == 0


def test_views_built_by_a_newer_tracker_are_refused_not_overwritten(store: EventStore) -> None:
    from tracker.errors import SchemaError

    append(store, [ESSEQUIBO, published("article-a", "upi-top", "Essequibo news")])
    catch_up(store, PROJECTORS)
    with store.engine.begin() as connection:
        connection.execute(
            sa.update(projections).where(projections.c.name == "articles").values(version=99)
        )
    append(store, [published("article-b", "upi-top", "Essequibo again", day=2)])
    with pytest.raises(SchemaError, match="built by a newer tracker"):
        catch_up(store, PROJECTORS)
    with pytest.raises(SchemaError, match="built by a newer tracker"):
        replay(store, PROJECTORS)
    assert read_checkpoints(store.engine)["articles"].version == 99


def test_a_users_own_view_on_ours_survives_a_replay(store: EventStore) -> None:
    append(store, [ESSEQUIBO, published("article-a", "upi-top", "Essequibo news")])
    catch_up(store, PROJECTORS)
    with store.engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE VIEW my_report AS SELECT storyline_id, count(*) AS n "
            "FROM storyline_articles GROUP BY storyline_id"
        )
    replay(store, PROJECTORS)
    with store.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT storyline_id, n FROM my_report").all()
    assert [tuple(row) for row in rows] == [("essequibo", 1)]


def test_replaying_one_projection_leaves_every_view_at_the_same_position(
    settings: object, store: EventStore
) -> None:
    from tracker.service import Tracker

    append(store, [ESSEQUIBO, published("article-a", "upi-top", "Essequibo news")])
    with Tracker(settings) as tracker:  # type: ignore[arg-type]
        tracker.catch_up()
        append(tracker.store, [published("article-b", "upi-top", "Essequibo again", day=2)])
        tracker.replay(["storylines"])
        status = tracker.status()
        assert {p.lag for p in status.projections} == {0}
        assert [a.id for a in tracker.story("essequibo").articles] == ["article-a", "article-b"]


@pytest.mark.postgres
def test_replay_and_a_catch_up_of_many_events_analyse_the_views_for_the_planner(
    postgres_url: str,
) -> None:
    """A catch-up that applied many events (the first build of the views, a daemon back after
    days) analyses the views, or where autovacuum is off or late PostgreSQL plans the story
    queries blind (at a million events `tracker story` took about half a second longer on
    views a catch-up had built). A daemon's small catch-ups do not."""
    engine = create_engine(postgres_url)
    try:
        ensure_schema(engine)
        store = EventStore(engine)
        history = RandomHistory(seed=3, size=150)
        append(store, history.events[:100])

        def analyses() -> dict[str, int]:
            with engine.connect() as connection:
                rows = connection.exec_driver_sql(
                    "SELECT relname, analyze_count FROM pg_stat_user_tables"
                    " WHERE schemaname = current_schema() AND relname ~ '__g[0-9]+$'"
                )
                return {name: count for name, count in rows}

        first = catch_up(store, PROJECTORS, analyse_after=len(history.events[:100]))
        after_first = analyses()
        append(store, history.events[100:])
        second = catch_up(store, PROJECTORS, analyse_after=len(history.events[:100]))
        after_second = analyses()
        # A replay analyses its new tables as they fill, each time they have doubled, and
        # once full: else each batch's deletes by article scan the whole growing table.
        replay(store, PROJECTORS, batch_size=10, analyse_after=20)
        replayed = {name: n for name, n in analyses().items() if name not in after_second}
    finally:
        engine.dispose()
    assert first.applied >= 100 and 0 < second.applied < 100
    assert after_first and set(after_first.values()) == {1}
    assert after_second == after_first
    # At about 20, 40 and 80 events of 150, and full.
    assert replayed.keys() == {name.replace("__g1", "__g2") for name in after_first}
    assert set(replayed.values()) == {4}
