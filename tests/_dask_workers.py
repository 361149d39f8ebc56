"""What the Dask tests' tasks run: importable by name in the workers.

Nothing here sets up logging: a worker logs into the funnel because
``logfunnel.dask.attach_workers`` attached it (or, in one test, ``attach_here``).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import socket
import threading
import uuid

log = logging.getLogger("worker")

#: Taken around each logging call with the next number: the numbers of one
#: process, in the order its threads logged them (a worker runs several tasks
#: at once, in threads).
_order = threading.Lock()
_numbers = itertools.count()

#: ``task=T attempt=A seq=S n=N``: the task, its attempt (a run of it: a task
#: whose worker dies runs again), the record's number in that run, and in its process.
RECORD = re.compile(r"task=(\d+) attempt=(\w+) seq=(\d+) n=(\d+)")


def _log(task: int, attempt: str, seq: int) -> None:
    with _order:
        log.info("task=%d attempt=%s seq=%d n=%d", task, attempt, seq, next(_numbers))


def log_task(task: int, records: int, gate: str | None = None) -> tuple[str, int]:
    """Log ``records`` records, the second half once the test's gate (a Unix socket) opens;
    return this run's attempt and the worker's pid."""
    attempt = uuid.uuid4().hex[:12]
    half = records // 2 if gate else records
    for seq in range(half):
        _log(task, attempt, seq)
    if gate:
        # A socket, not a Dask Event: a worker's own client hangs in fork workers.
        with socket.socket(socket.AF_UNIX) as opened:
            opened.settimeout(60)
            opened.connect(gate)
            if opened.recv(1) != b"1":
                raise ConnectionError(f"the gate at {gate} closed before it opened")
        for seq in range(half, records):
            _log(task, attempt, seq)
    return attempt, os.getpid()


def log_levels(tag: str) -> int:
    """A DEBUG and an INFO record on ``worker`` and on ``worker.chatty``; return the pid."""
    for name in ("worker", "worker.chatty"):
        logger = logging.getLogger(name)
        logger.debug("%s %s debug", tag, name)
        logger.info("%s %s info", tag, name)
    return os.getpid()


def root_state() -> tuple[int, list[str]]:
    """The root logger's level and its handlers' class names."""
    root = logging.getLogger()
    return root.level, [type(h).__name__ for h in root.handlers]


def set_env(name: str, value: str | None) -> None:
    """Set (or, with None, unset) an environment variable of this worker."""
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def attach_here(address: str) -> None:
    """Attach this worker as a program would, with no plugin."""
    import logfunnel

    logfunnel.attach(address)


def log_warning(tag: str) -> int:
    """One WARNING record (what a worker's default root level lets through); the pid."""
    log.warning("%s warns", tag)
    return os.getpid()


def sends_lines() -> bool:
    """Whether this worker's funnel handler sends finished lines (not frames)."""
    import logfunnel

    handler = logfunnel.attached()
    assert handler is not None
    return handler.config.get("lines") is not None
