"""Word-level differences between two versions of a text, for `tracker article`. Pure."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

# Words of unchanged text kept around each change when a long text is shortened.
CONTEXT_WORDS = 8


@dataclass(frozen=True)
class Piece:
    op: str  # "same", "removed" or "added"
    text: str


def word_diff(old: str, new: str) -> list[Piece]:
    """The pieces that turn `old` into `new`, word by word (whitespace is not a change)."""
    before, after = old.split(), new.split()
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    pieces: list[Piece] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            pieces.append(Piece("same", " ".join(before[i1:i2])))
            continue
        if i2 > i1:
            pieces.append(Piece("removed", " ".join(before[i1:i2])))
        if j2 > j1:
            pieces.append(Piece("added", " ".join(after[j1:j2])))
    return pieces


def render(pieces: list[Piece], context: int | None = CONTEXT_WORDS) -> str:
    """Plain text in the style of `git diff --word-diff=plain`: [-removed-]{+added+}.

    With `context`, long runs of unchanged words are cut to that many words beside a change.
    """
    out: list[str] = []
    for index, piece in enumerate(pieces):
        if piece.op == "removed":
            out.append(f"[-{piece.text}-]")
        elif piece.op == "added":
            out.append(f"{{+{piece.text}+}}")
        else:
            out.append(_trim(piece.text, context, index > 0, index < len(pieces) - 1))
    return " ".join(part for part in out if part)


def _trim(text: str, context: int | None, after_change: bool, before_change: bool) -> str:
    words = text.split()
    if context is None or len(words) <= 2 * context:
        return text
    head = words[:context] if after_change else []
    tail = words[-context:] if before_change else []
    return " ".join([*head, "…", *tail])
