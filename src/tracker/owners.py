"""Who holds a lease (a feed's poll claim, a replay's hold on projections): a name that says
which machine and process, so that a lease of a process that died can be taken over at once on
its own machine instead of waiting for it to expire."""

from __future__ import annotations

import os
import socket
import uuid


def process_owner() -> str:
    """This process as a lease names it: host, process id, and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def alive(owner: str) -> bool | None:
    """Whether the process named by `owner` runs; None when it is another machine's, or the
    name is not one process_owner gives."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return None
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, alive
    return True
