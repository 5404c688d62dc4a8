"""The exceptions tracker raises on purpose.

    TrackerError                 anything the user can act on; the CLI prints it as one line
    ├── UsageError               bad settings or arguments (exit 2)
    │   └── ConfigError          feeds.yaml is unreadable or invalid; holds one line per problem
    ├── StorageError             the database cannot be reached, opened or written (exit 1)
    │   ├── SchemaError          the database's schema is not the one this tracker expects
    │   └── CorruptEventError    a stored event cannot be decoded (changed behind our back)
    ├── CheckpointError          a checkpoint is forged or contradicts another
    ├── ConcurrencyError         a stream's version was not the expected one; nothing was written
    └── DuplicateEventError      a batch holds events already in the log, but is no plain retry

Any other exception escaping to the CLI is a bug.
"""

from __future__ import annotations


class TrackerError(Exception):
    """Base of every error tracker reports to its user."""

    exit_code = 1


class UsageError(TrackerError):
    exit_code = 2


class ConfigError(UsageError):
    """feeds.yaml has problems; `problems` holds one self-contained line for each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class StorageError(TrackerError):
    pass


class SchemaError(StorageError):
    pass


class CorruptEventError(StorageError):
    pass


class CheckpointError(TrackerError):
    """Checkpoints that cannot be trusted: a signature that does not match, or two that disagree."""


class ConcurrencyError(TrackerError):
    """The stream had moved on: the append was refused and nothing was written."""

    def __init__(self, stream_id: str, expected: int | None, actual: int | None) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        if actual is None:
            message = f"stream {stream_id!r}: another writer appended to it first"
        elif expected is None:
            message = f"stream {stream_id!r}: another writer moved it to version {actual} first"
        else:
            message = (
                f"stream {stream_id!r}: expected version {expected}, but it is at version {actual}"
            )
        super().__init__(message)


class DuplicateEventError(TrackerError):
    """Some events of a batch are in the log already, but the batch is not a plain retry.

    A plain retry resends the very same events to the same stream; this is a batch that mixes
    recorded and new events, or resends events to another stream than they were recorded in.
    """

    def __init__(
        self, stream_id: str, event_ids: list[str], other_stream: str | None = None
    ) -> None:
        self.stream_id = stream_id
        self.event_ids = event_ids
        self.other_stream = other_stream
        shown = ", ".join(event_ids[:3]) + (" ..." if len(event_ids) > 3 else "")
        where = f" in stream {other_stream!r}" if other_stream is not None else ""
        super().__init__(
            f"stream {stream_id!r}: {len(event_ids)} event(s) of this batch are already in the "
            f"log{where} ({shown}) and the batch is not a plain retry; nothing was written"
        )
