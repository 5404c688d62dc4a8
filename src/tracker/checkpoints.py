"""Checkpoints: the head of the hash chain, written down where the database's owner cannot reach.

The chain alone does not stop someone who changes an event and then rewrites the stored hash of
it and of every event after it, nor someone who deletes the newest events. A checkpoint, the
position and hash of the newest event at some moment, kept outside the database (another
machine, a notebook, an email to oneself), stops both: a log rewritten at or before that
position no longer holds that hash there, and a log cut short no longer reaches it.

With TRACKER_CHECKPOINT_KEY set, checkpoints are signed (HMAC-SHA256 of their fields) and
refused unsigned or with a signature that does not match, so one forged or edited where it is
kept is caught too; the key must then be kept from whoever could rewrite the log.

A file of checkpoints holds one JSON object per line, oldest first, so `tracker checkpoint
--output FILE` run from cron keeps extending it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tracker.errors import CheckpointError, UsageError
from tracker.integrity import canonical_time

CHECKPOINT_KEY_ENV = "TRACKER_CHECKPOINT_KEY"
_HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Checkpoint:
    position: int
    hash: str
    taken_at: str
    signature: str | None = None

    def document(self) -> dict[str, object]:
        fields: dict[str, object] = {
            "position": self.position,
            "hash": self.hash,
            "taken_at": self.taken_at,
        }
        if self.signature is not None:
            fields["signature"] = self.signature
        return fields

    def line(self) -> str:
        return json.dumps(self.document(), separators=(", ", ": "))


def checkpoint_key() -> bytes | None:
    """The signing key from the environment, None when unset or empty."""
    key = os.environ.get(CHECKPOINT_KEY_ENV, "")
    return key.encode("utf-8") if key else None


def make_checkpoint(position: int, hash_: str, taken_at: datetime, key: bytes | None) -> Checkpoint:
    moment = canonical_time(taken_at)
    signature = _signature(key, position, hash_, moment) if key is not None else None
    return Checkpoint(position, hash_, moment, signature)


def _signature(key: bytes, position: int, hash_: str, taken_at: str) -> str:
    # A prefix of its own, so no other HMAC made with the same key can pass for a checkpoint.
    message = f"tracker checkpoint\n{position}\n{hash_}\n{taken_at}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def read_checkpoints(path: str | Path, key: bytes | None) -> list[Checkpoint]:
    """Every checkpoint in a file, each checked for its form and, with a key, its signature.

    UsageError for a file that cannot be read or a line that is no checkpoint; CheckpointError
    for a signature that does not match, a checkpoint unsigned while a key is set, or two
    checkpoints that disagree about one position (the log was rewritten between them).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise UsageError(f"{path}: cannot read the checkpoints: {reason}") from None
    found: list[Checkpoint] = []
    seen: dict[int, tuple[str, int]] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{path} line {number}"
        checkpoint = _parse(raw, where)
        _check_signature(checkpoint, key, where)
        earlier = seen.get(checkpoint.position)
        if earlier is not None and earlier[0] != checkpoint.hash:
            raise CheckpointError(
                f"{where}: checkpoints disagree about position {checkpoint.position} (see line "
                f"{earlier[1]}): the log was rewritten between them"
            )
        seen[checkpoint.position] = (checkpoint.hash, number)
        found.append(checkpoint)
    if not found:
        raise UsageError(f"{path}: holds no checkpoint")
    return found


def _parse(raw: str, where: str) -> Checkpoint:
    try:
        fields = json.loads(raw)
    except ValueError as error:
        raise UsageError(f"{where}: not a checkpoint (invalid JSON: {error})") from None
    if not isinstance(fields, dict):
        raise UsageError(f"{where}: not a checkpoint (expected a JSON object)")
    position = fields.get("position")
    hash_ = fields.get("hash")
    taken_at = fields.get("taken_at")
    signature = fields.get("signature")
    if type(position) is not int or position < 1:
        raise UsageError(f"{where}: 'position' must be a whole number from 1")
    if not isinstance(hash_, str) or not _HASH.fullmatch(hash_):
        raise UsageError(f"{where}: 'hash' must be 64 lowercase hexadecimal digits")
    if not isinstance(taken_at, str):
        raise UsageError(f"{where}: 'taken_at' must be a time as text")
    if signature is not None and (not isinstance(signature, str) or not _HASH.fullmatch(signature)):
        raise UsageError(f"{where}: 'signature' must be 64 lowercase hexadecimal digits")
    return Checkpoint(position, hash_, taken_at, signature)


def _check_signature(checkpoint: Checkpoint, key: bytes | None, where: str) -> None:
    if key is None:
        if checkpoint.signature is not None:
            raise UsageError(
                f"{where}: the checkpoint is signed; set {CHECKPOINT_KEY_ENV} to the key that "
                "signed it"
            )
        return
    if checkpoint.signature is None:
        raise CheckpointError(
            f"{where}: the checkpoint is not signed, but {CHECKPOINT_KEY_ENV} is set: "
            "it may have been written by someone without the key"
        )
    expected = _signature(key, checkpoint.position, checkpoint.hash, checkpoint.taken_at)
    if not hmac.compare_digest(expected, checkpoint.signature):
        raise CheckpointError(
            f"{where}: the signature does not match (the checkpoint was changed, or another "
            "key signed it)"
        )
