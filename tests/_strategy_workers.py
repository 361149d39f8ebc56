"""Child-process functions for the strategy tests: locked file, per-process files,
rotation in the collector.

They live in an importable module so that spawn and forkserver children can
find them by name. Every record's text is derived from (worker, number), so a
torn, mixed or doubled line shows up in the audit (``_support.audit``).
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from typing import Any

import logfunnel

#: The logger every worker here uses; it never propagates to a test's root logger.
LOGGER = "strategy"

_ASTRAL = ("\U0001d11e", "\U0001f600", "\U00010348", "\u00e9\u00e8", "\u4e2d\u6587")
#: Where a record starts in a line: the rest of the line must be ``message(worker, number)``.
RECORD = re.compile(r"W(?P<worker>\d+) R(?P<number>\d+) \[")


def message(worker: int, number: int) -> str:
    """The exact text of record ``number`` of ``worker``: about 110 bytes of UTF-8, astral too."""
    chars = _ASTRAL[number % len(_ASTRAL)] * (1 + (worker + number) % 7)
    body = f"{chars} {worker * 7919 + number:x}".ljust(80, ".")
    return f"W{worker} R{number} [{body}] end"


def _pause(rng: random.Random) -> None:
    """Part of the workload: now and then a short random pause, so rotations meet writers."""
    if rng.random() < 0.03:
        time.sleep(rng.random() * 0.003)


def _own_logger(handler: logging.Handler) -> logging.Logger:
    log = logging.getLogger(LOGGER)
    for old in log.handlers[:]:
        log.removeHandler(old)
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    return log


def log_records(worker: int, count: int, until: float = 0.0, pace: float = 0.0) -> None:
    """Log ``count`` records, and go on until the wall clock passes ``until``, ``pace`` apart."""
    rng = random.Random(worker)
    log = logging.getLogger(LOGGER)
    number = 0
    while number < count or time.time() < until:
        log.info("%s", message(worker, number))
        number += 1
        _pause(rng)
        if pace:
            time.sleep(pace)


def funnel_worker(worker: int, count: int, seconds: float = 0.0, pace: float = 0.0) -> None:
    """A funnel child: plain logging through the root logger it was attached with.

    With ``seconds``, it goes on logging for that long after it starts.
    """
    logging.getLogger(LOGGER).propagate = True
    log_records(worker, count, time.time() + seconds if seconds else 0.0, pace)


def locked_writer(
    path: str, worker: int, count: int, max_bytes: int, backups: int, lock_writes: bool = False
) -> None:
    """An unrelated process: its own LockedFileHandler on the shared path."""
    handler = logfunnel.LockedFileHandler(
        path, max_bytes=max_bytes, backups=backups, lock_writes=lock_writes
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    _own_logger(handler)
    try:
        log_records(worker, count)
    finally:
        handler.close()


def timed_locked_writer(path: str, worker: int, count: int, seconds: float) -> None:
    """An unrelated process writing for ``seconds`` into a shared file rotated every second."""
    handler = logfunnel.LockedFileHandler(path, when="S", backups=0)
    handler.setFormatter(logging.Formatter("%(message)s"))
    _own_logger(handler)
    try:
        log_records(worker, count, time.time() + seconds, pace=0.0005)
    finally:
        handler.close()


def inherited_writer(worker: int, count: int) -> None:
    """A fork child: logs through the handler its parent set up before forking."""
    log_records(worker, count)


class _BlockedInRotation(logfunnel.LockedFileHandler):
    """Stops inside ``rotate`` (so with the exclusive lock held) until it is killed."""

    ready: Any = None
    never: Any = None

    def rotate(self) -> None:
        self.ready.set()
        self.never.wait(120)
        os._exit(3)


def die_holding_the_lock(path: str, ready: Any, never: Any) -> None:
    """Fill the file past ``max_bytes`` so the next record rotates, and block in there."""
    handler = _BlockedInRotation(path, max_bytes=100, backups=5)
    handler.ready, handler.never = ready, never
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = _own_logger(handler)
    for number in range(10):
        log.info("%s", message(99, number))


class _PausedWriter(logfunnel.LockedFileHandler):
    """Stops between its "is my file current?" check and its write, until told to go on."""

    paused: Any = None
    go: Any = None

    def _append(self, data: bytes) -> None:
        self.paused.set()
        self.go.wait(120)
        super()._append(data)


def pause_before_write(path: str, worker: int, paused: Any, go: Any) -> None:
    """Log one record, stopping inside the write path at the worst moment for rotation."""
    handler = _PausedWriter(path, max_bytes=1 << 20, backups=5)
    handler.paused, handler.go = paused, go
    handler.setFormatter(logging.Formatter("%(message)s"))
    _own_logger(handler).info("%s", message(worker, 0))
    handler.close()


def process_file_writer(pattern: str, worker: int, count: int) -> None:
    """One process, one file of its own; multi-line records now and then."""
    handler = logfunnel.ProcessFileHandler(pattern)
    log = _own_logger(handler)
    rng = random.Random(worker)
    try:
        for number in range(count):
            if number % 97 == 5:
                log.info("%s\n  second line\n  third line", message(worker, number))
            else:
                log.info("%s", message(worker, number))
            _pause(rng)
    finally:
        handler.close()


def process_file_then_wait(pattern: str, count: int, logged: Any, never: Any) -> None:
    """Log ``count`` records, tell the parent, then wait to be SIGKILLed."""
    handler = logfunnel.ProcessFileHandler(pattern)
    _own_logger(handler)
    log_records(0, count)
    logged.set()
    never.wait(120)
    os._exit(3)


def fork_then_log(pattern: str, count: int) -> None:
    """Log, fork a child that logs through the same handler, then log again."""
    handler = logfunnel.ProcessFileHandler(pattern)
    _own_logger(handler)
    log_records(0, count)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            log_records(1, count)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise RuntimeError(f"the fork child failed with status {status}")
    log_records(2, count)
    handler.close()
