"""The exceptions tracker raises on purpose.

    TrackerError                 anything the user can act on; the CLI prints it as one line
    ├── UsageError               bad settings or arguments (exit 2)
    │   └── ConfigError          feeds.yaml is unreadable or invalid; holds one line per problem
    ├── StorageError             the database cannot be reached, opened or written (exit 1)
    │   ├── SchemaError          the database's schema is not the one this tracker expects
    │   └── CorruptEventError    a stored event cannot be decoded (changed behind our back)
    ├── ConcurrencyError         a stream's version was not the expected one; nothing was written
    └── DuplicateEventError      a batch mixes events already in the log with new ones

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


class ConcurrencyError(TrackerError):
    """The stream had moved on: the append was refused and nothing was written."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"stream {stream_id!r}: expected version {expected}, but it is at version {actual}"
        )


class DuplicateEventError(TrackerError):
    """Some, but not all, events of a batch are already in the log: not a plain retry."""

    def __init__(self, stream_id: str, event_ids: list[str]) -> None:
        self.stream_id = stream_id
        self.event_ids = event_ids
        shown = ", ".join(event_ids[:3]) + (" ..." if len(event_ids) > 3 else "")
        super().__init__(
            f"stream {stream_id!r}: batch mixes {len(event_ids)} event(s) already in the log "
            f"({shown}) with new ones; nothing was written"
        )
