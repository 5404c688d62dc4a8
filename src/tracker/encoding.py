"""Events to rows and rows back to events, kept apart from the SQL that moves them.

The same checks run on every database, so that SQLite and PostgreSQL accept exactly the same
events: PostgreSQL refuses NUL characters in text, SQLite would store them; neither should
hold JSON that is not JSON (NaN) or text that is not Unicode (lone surrogates).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from tracker.errors import CorruptEventError
from tracker.integrity import ChainRow
from tracker.records import RecordedEvent

_UUID_HEX = re.compile(r"[0-9a-f]{32}")
_decode_json = json.JSONDecoder().decode


def _unicode(text: str, what: str) -> str:
    if text.isascii():  # the usual case, and no surrogate can hide in it
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} holds a lone surrogate, which is not Unicode text") from None
    return text


# Built once: json.dumps with options builds an encoder on every call.
_encode_json = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
).encode


def encode_json(value: Any, what: str) -> str:
    """Compact, key-sorted JSON; ValueError for values JSON cannot hold (NaN, sets, ...)."""
    try:
        text = _encode_json(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} is not JSON: {error}") from None
    return _unicode(text, what)


def check_name(text: str, what: str, max_length: int) -> str:
    """Stream ids and event types: 1 to max_length characters of Unicode, no NUL."""
    if not 0 < len(text) <= max_length:
        raise ValueError(f"{what} has 1 to {max_length} characters: {text[:80]!r}")
    if "\x00" in text:
        raise ValueError(f"{what} holds a NUL character: {text[:80]!r}")
    return _unicode(text, what)


def aware_utc(moment: datetime) -> datetime:
    """A clock reading in UTC; a naive one is refused, since its zone is anyone's guess."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"the clock gave a time without a time zone: {moment.isoformat()}")
    return moment.astimezone(UTC)


def stored_time(value: datetime | str) -> datetime:
    """A recorded_at value from the database as aware UTC.

    SQLite holds naive UTC text; PostgreSQL returns an aware datetime in the session's zone.
    """
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def stored_uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(hex=value)


def recorded_event(row: Sequence[Any]) -> RecordedEvent:
    """A row of the reader's envelope columns as a RecordedEvent.

    Unpacks by position: attribute access on a Row costs more than decoding the payload.
    """
    (
        position,
        event_id,
        stream_id,
        stream_version,
        event_type,
        schema_version,
        payload,
        metadata,
        recorded_at,
    ) = row
    try:
        return RecordedEvent(
            position,
            stored_uuid(event_id),
            stream_id,
            stream_version,
            event_type,
            schema_version,
            _decode_json(payload),
            _decode_json(metadata),
            stored_time(recorded_at),
        )
    except (ValueError, TypeError, AttributeError) as error:
        raise CorruptEventError(
            f"event at position {position} cannot be read ({type(error).__name__}: {error}); "
            "run `tracker verify` to check the log"
        ) from None


def _chain_uuid(value: uuid.UUID | str) -> str:
    # SQLite stores the 32 lower-case hex digits; anything else there was edited in, and is
    # hashed as it stands so that the chain breaks.
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str) and _UUID_HEX.fullmatch(value):
        return str(uuid.UUID(hex=value))
    return repr(value)


def _chain_time(value: datetime | str) -> datetime | str:
    if isinstance(value, datetime):
        return stored_time(value)
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return repr(value)
    # Only the exact text SQLAlchemy writes counts: "2026-11-24 10:21:42.784066".
    if parsed.tzinfo is None and parsed.isoformat(" ", "microseconds") == value:
        return parsed.replace(tzinfo=UTC)
    return repr(value)


def chain_row(row: Sequence[Any]) -> ChainRow:
    """A row of the envelope columns plus the stored hash, exactly as the hash chain sees it."""
    position, event_id, stream_id, version, event_type, schema_version, *rest = row
    payload, metadata, recorded_at, stored_hash = rest
    return ChainRow(
        position,
        _chain_uuid(event_id),
        stream_id,
        version,
        event_type,
        schema_version,
        payload,
        metadata,
        _chain_time(recorded_at),
        stored_hash,
    )
