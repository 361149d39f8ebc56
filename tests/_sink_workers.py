"""Functions run in child processes by the sink fidelity tests, and the records they log.

They live in an importable module so that spawn and forkserver children find
them by name, and so that a test can log the very same records in its own
process with plain ``logging``, which is what the funnel's output must match.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("fidelity")

#: The sinks' format: nothing in it differs between a worker and the test's
#: own process (no pid, no process name, no relative time).
FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
PLAIN_FORMAT = "%(levelname)s %(name)s %(message)s"

#: A fixed second (2023-11-14, a Tuesday) for the pinned-time records.
BASE = 1_700_000_025
#: Pinned times and kinds, in logging order. Each trio is: a plain record at
#: millisecond 125 of a second, a record through the stdlib's format path (an
#: exception or a stack) in the next second, then a plain record at the same
#: millisecond 125 of that next second. A cache keyed on the wrong things
#: writes the first record's second into the third.
PINNED: list[tuple[float, str]] = [
    (BASE + 0.125, "plain"),
    (BASE + 1.5, "exc"),
    (BASE + 1.125, "plain"),
    (BASE + 1.125, "plain"),
    (BASE + 10.125, "plain"),
    (BASE + 11.75, "stack"),
    (BASE + 11.125, "plain"),
    (BASE + 20.25, "plain"),
    (BASE + 21.25, "exc"),
    (BASE + 22.25, "exc"),
    (BASE + 22.25, "plain"),
]


def message(index: int, number: int, bad_at: int) -> str:
    """Record ``number`` of worker ``index``; the ``bad_at``-th has a character ASCII lacks."""
    head = f"w{index} n{number}"
    return f"{head} caf\u00e9" if number == bad_at else head


def numbered(index: int, count: int, bad_at: int = -1) -> None:
    """``count`` INFO records of ``message``, as fast as possible."""
    for number in range(count):
        log.info("%s", message(index, number, bad_at))


def pinned_record(index: int, number: int, created: float, kind: str) -> logging.LogRecord:
    """An INFO record made at ``created`` (to the millisecond), with an exception or a
    stack when ``kind`` says so; the same text in any process that makes it."""
    exc_info = None
    stack = None
    if kind == "exc":
        try:
            raise ValueError(f"w{index} n{number} failed on purpose")
        except ValueError:
            exc_info = sys.exc_info()
    elif kind == "stack":
        stack = "Stack (most recent call last):\n  a pinned stack"
    args = (index, number, kind)
    record = log.makeRecord(
        log.name, logging.INFO, __file__, 1, "w%d n%d %s", args, exc_info, sinfo=stack
    )
    record.created = created
    record.msecs = (created - int(created)) * 1000 // 1
    return record


def pinned(index: int) -> None:
    """Log the ``PINNED`` records, in order."""
    for number, (created, kind) in enumerate(PINNED):
        log.handle(pinned_record(index, number, created, kind))
