"""Checkpoints kept outside the database catch what the plain hash chain cannot: a log rewritten
with every later hash recomputed, and the newest events deleted; signed ones also catch a
checkpoint forged where it is kept."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from helpers import run_tracker
from test_integrity import drop_guards, fill

from tracker.checkpoints import Checkpoint, make_checkpoint, read_checkpoints
from tracker.errors import CheckpointError, UsageError
from tracker.eventstore import EventStore
from tracker.integrity import GENESIS, chain_hash
from tracker.records import NewEvent
from tracker.service import Tracker
from tracker.settings import Settings

KEY = b"kept-away-from-the-database"


def recompute_hashes(store: EventStore) -> None:
    """What someone who knows how the chain is made does after editing history: make every
    stored hash match again, so the plain chain verifies."""
    previous = GENESIS
    with store.engine.begin() as connection:
        for row in list(store.read_chain()):
            rewritten = chain_hash(previous, row)
            if rewritten != row.hash:
                connection.execute(
                    sa.text("UPDATE events SET hash = :hash WHERE position = :position"),
                    {"hash": rewritten, "position": row.position},
                )
            previous = rewritten


def shift_positions(connection: sa.Connection, after: int, by: int) -> None:
    # By way of positions far above the log, since PostgreSQL checks the key row by row.
    connection.exec_driver_sql(
        f"UPDATE events SET position = position + 100000 WHERE position > {after}"
    )
    connection.exec_driver_sql(
        f"UPDATE events SET position = position - 100000 + ({by}) WHERE position > 100000"
    )


def change_an_event(connection: sa.Connection) -> None:
    connection.exec_driver_sql(
        'UPDATE events SET payload = \'{"n":2,"title":"forged"}\' WHERE position = 3'
    )


def delete_an_event(connection: sa.Connection) -> None:
    connection.exec_driver_sql("DELETE FROM events WHERE position = 3")
    shift_positions(connection, 3, -1)


def reorder_two_events(connection: sa.Connection) -> None:
    connection.exec_driver_sql("UPDATE events SET position = 1003 WHERE position = 3")
    connection.exec_driver_sql("UPDATE events SET position = 3 WHERE position = 4")
    connection.exec_driver_sql("UPDATE events SET position = 4 WHERE position = 1003")


def delete_the_newest(connection: sa.Connection) -> None:
    connection.exec_driver_sql("DELETE FROM events WHERE position > 4")


TAMPERING: dict[str, Callable[[sa.Connection], None]] = {
    "changed": change_an_event,
    "deleted": delete_an_event,
    "reordered": reorder_two_events,
    "newest deleted": delete_the_newest,
}


def tampered(tracker: Tracker, what: str, *, recompute: bool) -> None:
    drop_guards(tracker.store.engine)
    with tracker.store.engine.begin() as connection:
        TAMPERING[what](connection)
    if recompute:
        recompute_hashes(tracker.store)


@pytest.mark.parametrize("what", TAMPERING)
def test_the_plain_chain_catches_tampering_unless_the_hashes_are_recomputed(
    settings: Settings, what: str
) -> None:
    with Tracker.open(settings) as tracker:
        fill(tracker.store, 6)
        tampered(tracker, what, recompute=False)
        caught = tracker.verify()
        recompute_hashes(tracker.store)
        rewritten = tracker.verify()
    # Cutting off the newest events leaves nothing for the chain to see, even unrewritten.
    assert caught.ok == (what == "newest deleted")
    assert rewritten.ok, "documented: the plain chain does not stop a full rewrite"


@pytest.mark.parametrize("signed", [False, True], ids=["checkpoint", "signed checkpoint"])
@pytest.mark.parametrize("what", TAMPERING)
def test_a_checkpoint_catches_every_tampering_even_with_the_hashes_recomputed(
    settings: Settings, what: str, signed: bool
) -> None:
    key = KEY if signed else None
    with Tracker.open(settings) as tracker:
        fill(tracker.store, 6)
        checkpoint = tracker.checkpoint(key)
        assert checkpoint.position == 6
        assert tracker.verify(checkpoints=[checkpoint]).ok
        tampered(tracker, what, recompute=True)
        report = tracker.verify(checkpoints=[checkpoint])
    assert not report.ok
    assert (report.first_bad_position, report.problem) == CAUGHT[what]


REWRITTEN = "does not have the hash its checkpoint recorded (the log was rewritten at or before it)"
CAUGHT = {
    "changed": (6, f"event at position 6 {REWRITTEN}"),
    "reordered": (6, f"event at position 6 {REWRITTEN}"),
    "deleted": (
        6,
        "the log ends at position 5, but a checkpoint recorded position 6 (events were deleted)",
    ),
    "newest deleted": (
        5,
        "the log ends at position 4, but a checkpoint recorded position 6 (events were deleted)",
    ),
}


def test_a_rewrite_after_the_newest_checkpoint_is_not_what_it_vouches_for(
    settings: Settings,
) -> None:
    with Tracker.open(settings) as tracker:
        fill(tracker.store, 4)
        checkpoint = tracker.checkpoint(None)
        fill_more(tracker.store)
        drop_guards(tracker.store.engine)
        with tracker.store.engine.begin() as connection:
            connection.exec_driver_sql("UPDATE events SET payload = '{}' WHERE position = 6")
        recompute_hashes(tracker.store)
        report = tracker.verify(checkpoints=[checkpoint])
    # Documented: a checkpoint vouches for the log up to its position; take them often.
    assert report.ok and report.checked == 7


def fill_more(store: EventStore) -> None:
    fill_from = store.head_position()
    for i in range(3):
        store.append(f"later-{fill_from + i}", [NewEvent("article.published", {"n": i})], 0)


def write_checkpoints(path: Path, *checkpoints: Checkpoint) -> Path:
    path.write_text("".join(checkpoint.line() + "\n" for checkpoint in checkpoints))
    return path


def test_a_checkpoint_forged_where_it_is_kept_is_caught_only_when_signed(
    settings: Settings, tmp_path: Path
) -> None:
    with Tracker.open(settings) as tracker:
        fill(tracker.store, 6)
        honest = tracker.checkpoint(KEY)
        tampered(tracker, "changed", recompute=True)
        # The forger rewrote the log and writes a checkpoint of the new head in place of ours,
        # without the key: unsigned, or signed with a key of their own.
        head = tracker.checkpoint(None)
        unsigned = write_checkpoints(tmp_path / "unsigned.jsonl", head)
        forged = make_checkpoint(head.position, head.hash, datetime.now(UTC), b"guessed")
        wrong_key = write_checkpoints(tmp_path / "forged.jsonl", forged)
        assert not tracker.verify(checkpoints=[honest]).ok
        assert tracker.verify(checkpoints=read_checkpoints(unsigned, None)).ok
    with pytest.raises(CheckpointError, match="not signed, but TRACKER_CHECKPOINT_KEY is set"):
        read_checkpoints(unsigned, KEY)
    with pytest.raises(CheckpointError, match="the signature does not match"):
        read_checkpoints(wrong_key, KEY)


def test_checkpoint_verifies_before_it_vouches_and_goes_on_from_the_last_one(
    settings: Settings,
) -> None:
    with Tracker.open(settings) as tracker:
        fill(tracker.store, 4)
        first = tracker.checkpoint(KEY)
        fill_more(tracker.store)
        checked: list[int] = []
        second = tracker.checkpoint(KEY, previous=first, progress=checked.append)
        assert (second.position, sum(checked)) == (7, 3)
        assert tracker.verify(checkpoints=[first, second]).ok
        tampered(tracker, "changed", recompute=True)
        with pytest.raises(CheckpointError, match="no checkpoint taken: .* position 4"):
            tracker.checkpoint(KEY, previous=first)


def test_no_checkpoint_vouches_for_a_broken_chain(settings: Settings) -> None:
    with Tracker.open(settings) as tracker:
        fill(tracker.store, 5)
        tampered(tracker, "changed", recompute=False)
        with pytest.raises(CheckpointError, match="no checkpoint taken: .* at position 3: "):
            tracker.checkpoint(KEY)


def test_an_empty_log_has_nothing_to_checkpoint(settings: Settings) -> None:
    with Tracker.open(settings) as tracker, pytest.raises(UsageError, match="log is empty"):
        tracker.checkpoint(None)


def test_the_commands_keep_and_check_checkpoints(sqlite_url: str, tmp_path: Path) -> None:
    with Tracker.open(Settings(sqlite_url, Settings.resolve().config_path)) as tracker:
        fill(tracker.store, 5)
    kept = tmp_path / "elsewhere" / "checkpoints.jsonl"
    kept.parent.mkdir()
    env = {"TRACKER_DATABASE_URL": sqlite_url, "TRACKER_CHECKPOINT_KEY": KEY.decode()}
    taken = run_tracker("checkpoint", "--output", str(kept), env=env)
    assert taken.returncode == 0, taken.stderr
    assert taken.stdout.startswith("checkpoint at position 5 (signed, ")
    assert taken.stdout.rstrip().endswith(f"appended to {kept}")
    (line,) = kept.read_text().splitlines()
    assert '"position": 5' in line and '"signature": ' in line
    verified = run_tracker("verify", "--checkpoints", str(kept), env=env)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.strip() == (
        "verified 5 events: the hash chain is intact, and matches 1 checkpoint"
    )

    with Tracker.open(Settings(sqlite_url, Settings.resolve().config_path)) as tracker:
        tampered(tracker, "newest deleted", recompute=False)
    caught = run_tracker("verify", "--checkpoints", str(kept), "--json", env=env)
    assert caught.returncode == 1
    assert '"first_bad_position": 5' in caught.stdout
    refused = run_tracker("checkpoint", "-o", str(kept), env=env)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: no checkpoint taken: ")
    assert len(kept.read_text().splitlines()) == 1, "nothing appended"

    no_key = run_tracker(
        "verify", "--checkpoints", str(kept), env={"TRACKER_DATABASE_URL": sqlite_url}
    )
    assert no_key.returncode == 2
    assert no_key.stderr == (
        f"error: {kept} line 1: the checkpoint is signed; set TRACKER_CHECKPOINT_KEY to the key "
        "that signed it\n"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "holds no checkpoint"),
        ("{not json\n", "line 1: not a checkpoint (invalid JSON"),
        ("[1, 2]\n", "line 1: not a checkpoint (expected a JSON object)"),
        (
            '\n{"position": "5", "hash": "' + "a" * 64 + '", "taken_at": "x"}\n',
            "line 2: 'position'",
        ),
        ('{"position": 5, "hash": "ABC", "taken_at": "x"}\n', "line 1: 'hash' must be 64"),
        ('{"position": 5, "hash": "' + "a" * 64 + '"}\n', "line 1: 'taken_at' must be"),
    ],
)
def test_a_file_that_holds_no_checkpoints_is_a_clear_error(
    sqlite_url: str, tmp_path: Path, text: str, problem: str
) -> None:
    kept = tmp_path / "checkpoints.jsonl"
    kept.write_text(text)
    result = run_tracker("verify", "--checkpoints", str(kept), "--database-url", sqlite_url)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {kept}") and problem in line


def test_checkpoints_that_disagree_about_a_position_say_the_log_was_rewritten(
    tmp_path: Path,
) -> None:
    moment = datetime(2026, 12, 1, tzinfo=UTC)
    one = make_checkpoint(5, "a" * 64, moment, None)
    other = make_checkpoint(5, "b" * 64, moment, None)
    kept = write_checkpoints(tmp_path / "checkpoints.jsonl", one, one, other)
    with pytest.raises(CheckpointError, match="line 3: checkpoints disagree about position 5 "):
        read_checkpoints(kept, None)
