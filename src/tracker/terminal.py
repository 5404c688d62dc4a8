"""Making text from feeds and from the log safe and readable in a terminal."""

from __future__ import annotations

import re

# C0 and C1 controls (ESC among them) and DEL can rewrite the screen; bidirectional overrides
# and isolates can make text read other than it is stored (CVE-2021-42574, "Trojan Source");
# line and paragraph separators break lines where a reader sees none.
_CONTROL = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def printable(text: str) -> str:
    """Replace control characters with visible escapes (`\\x1b`, `\\u202e`), keep the rest."""
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"
