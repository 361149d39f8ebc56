"""The records the JSON lines tests log, in a worker or in the test's own process.

They live in an importable module so that spawn and forkserver children find
them by name, and so that a test can log the very same records in its own
process through a plain ``FileHandler``, which is what the funnel must match.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

log = logging.getLogger("jsonlines")

#: A fixed time (2023-11-14), so that the records' times match across processes.
BASE = 1_700_000_025.0


class Unprintable:
    """An ``extra`` value whose ``__str__`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    def __repr__(self) -> str:
        return "<Unprintable>"


class Point:
    """An ``extra`` value JSON cannot hold: it is written as its ``str()``."""

    def __str__(self) -> str:
        return "Point(1, 2)"


def _recursive() -> list[Any]:
    loop: list[Any] = [1]
    loop.append(loop)
    return loop


def records() -> list[logging.LogRecord]:
    """The records, made afresh: plain, odd messages, every kind of extra, an
    exception and a stack, each at a pinned time."""
    made: list[logging.LogRecord] = []

    def add(
        msg: str, args: Any = (), *, exc: bool = False, stack: bool = False, **extra: Any
    ) -> None:
        exc_info = None
        if exc:
            try:
                raise ValueError(f"record {len(made)} failed on purpose")
            except ValueError:
                exc_info = sys.exc_info()
        record = log.makeRecord(
            log.name,
            logging.WARNING,
            __file__,
            10,
            msg,
            args,
            exc_info,
            extra=extra or None,
            sinfo="Stack (most recent call last):\n  a pinned stack" if stack else None,
        )
        record.created = BASE + len(made) * 0.123457
        record.msecs = (record.created - int(record.created)) * 1000 // 1
        made.append(record)

    add("plain")
    add("with %s and %d", ("args", 7))
    add('quotes " and \\ and \n newline \t tab \x00 nul \x1f \x7f del')
    add("caf\u00e9 \u2028 \U0001f600 lone \ud800 and \udfff")
    add("exact extras", user="ann", n=3, ratio=0.5, ok=True, none=None, items=[1, "a", {"k": []}])
    add("odd extras", point=Point(), pair=(1, 2), nan=float("nan"), inf=[float("inf")])
    add("hostile extras", bad=Unprintable(), loop=_recursive(), huge=10**5000)
    add("an extra named like a field", host="elsewhere", level="mine")
    add("surrogate extra", **{"k\ud800": "v\udc80"})
    add("with an exception", exc=True)
    add("with a stack", stack=True)
    add("both", exc=True, stack=True, user="bob")
    add("big " + "x" * (10 * 1024 * 1024))
    return made


def log_records() -> None:
    """Log ``records()`` as a worker would."""
    for record in records():
        log.handle(record)
