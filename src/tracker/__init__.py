"""tracker: an event-sourced news tracker.

Feeds are polled into an append-only event log; every view is built from that log.
"""

__version__ = "0.1.0"
