"""Making text from feeds and from the log safe and readable in a terminal."""

from __future__ import annotations

import re

# C0 and C1 controls (ESC among them) and DEL: printed raw they can rewrite the screen.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Replace control characters with visible escapes (`\\x1b`), keeping everything else."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"
