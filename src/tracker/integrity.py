"""The hash chain that makes tampering with the log evident.

Each event's hash covers its position, its content exactly as stored, and the hash of the event
before it in global order; the first event chains from GENESIS. Changing or reordering a stored
event, or deleting one that has events after it, therefore breaks the chain at that position.
The chain cannot tell that the newest events were cut off, and does not stop someone who can
rewrite every later hash too: it is evidence against accidents and casual edits, not a
signature. Checkpoints kept elsewhere (tracker.checkpoints) close both gaps.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

GENESIS = "0" * 64


def canonical_time(moment: datetime | str) -> str:
    """The one text form of a recorded time that the hash covers (UTC, microseconds).

    Text that is no time at all (edited in behind the store's back) is hashed as it is.
    """
    if isinstance(moment, str):
        return moment
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds") + "Z"


class ChainRow(NamedTuple):
    """An events row as stored: text columns untouched, so the hash sees the stored bytes."""

    position: int
    event_id: str
    stream_id: str
    stream_version: int
    event_type: str
    schema_version: int
    payload: str
    metadata: str
    recorded_at: datetime | str
    hash: str


def chain_hash(previous_hash: str, row: ChainRow) -> str:
    return hashlib.sha256(
        chain_material(previous_hash, row).encode("utf-8", "surrogatepass")
    ).hexdigest()


def chain_material(previous_hash: str, row: ChainRow) -> str:
    """What the hash covers: the fields as a compact JSON array (not ensure_ascii), a framing
    in which no separator can be forged."""
    fields: list[object] = [
        previous_hash,
        row.position,
        row.event_id,
        row.stream_id,
        row.stream_version,
        row.event_type,
        row.schema_version,
        row.payload,
        row.metadata,
        canonical_time(row.recorded_at),
    ]
    if list(map(type, fields)) == _STORED_TYPES:
        # The very text json.dumps writes, built here: the hash is on the path of every
        # append and every verify, and json.dumps escapes the payload at half this speed.
        texts = [_json_string(f) if type(f) is str else str(f) for f in fields]
        return "[" + ",".join(texts) + "]"
    # A value of another type than the store writes (edited in) is hashed as its repr: the
    # chain then breaks there instead of verify crashing.
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"), default=repr)


_STORED_TYPES = [str, int, str, str, int, str, int, str, str, str]
_escape = json.encoder.encode_basestring
_escape_ascii = json.encoder.encode_basestring_ascii


def _json_string(value: str) -> str:
    # ASCII text with no DEL is escaped alike with or without ensure_ascii, and the ASCII
    # escaper is twice as fast.
    if value.isascii() and "\x7f" not in value:
        return _escape_ascii(value)
    return _escape(value)


@dataclass(frozen=True)
class ChainReport:
    checked: int
    first_bad_position: int | None = None
    problem: str | None = None
    # The position and hash of the last event found sound, None if there was none.
    last: tuple[int, str] | None = None

    @property
    def ok(self) -> bool:
        return self.first_bad_position is None


def verify_chain(
    rows: Iterable[ChainRow],
    progress: Callable[[int], None] | None = None,
    anchors: Mapping[int, str] | None = None,
    after: tuple[int, str] = (0, GENESIS),
) -> ChainReport:
    """Walk rows in position order; stop at the first one that breaks the chain.

    `anchors` maps positions to the hashes checkpoints recorded for them: a row with another
    hash there, or a log that ends before one of them, was rewritten or cut short. `after` is
    the position and hash the rows follow on from (the start of the log by default).
    """
    anchors = anchors or {}
    previous_hash = after[1]
    expected_position = after[0] + 1
    checked = 0
    last: tuple[int, str] | None = None
    for row in rows:
        if row.position != expected_position:
            what = "missing" if row.position > expected_position else "out of order"
            return ChainReport(
                checked,
                expected_position,
                f"event at position {expected_position} is {what} (next stored is {row.position})",
                last,
            )
        if chain_hash(previous_hash, row) != row.hash:
            return ChainReport(
                checked,
                row.position,
                f"event at position {row.position} does not match its hash "
                "(its content, or an earlier event's, was changed)",
                last,
            )
        anchor = anchors.get(row.position)
        if anchor is not None and anchor != row.hash:
            return ChainReport(
                checked,
                row.position,
                f"event at position {row.position} does not have the hash its checkpoint "
                "recorded (the log was rewritten at or before it)",
                last,
            )
        previous_hash = row.hash
        expected_position += 1
        checked += 1
        last = (row.position, row.hash)
        if progress is not None and checked % 10_000 == 0:
            progress(10_000)
    if progress is not None and checked % 10_000:
        progress(checked % 10_000)
    beyond = [position for position in anchors if position >= expected_position]
    if beyond:
        return ChainReport(
            checked,
            expected_position,
            f"the log ends at position {expected_position - 1}, but a checkpoint recorded "
            f"position {max(beyond)} (events were deleted)",
            last,
        )
    return ChainReport(checked, last=last)
