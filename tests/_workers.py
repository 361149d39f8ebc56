"""Functions run in child processes by the core tests.

They live in an importable module (not in the test files) so that spawn and
forkserver children can find them by name. None of them sets up logging:
that is the point.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import logfunnel

log = logging.getLogger("worker")

#: Every BIG_EVERY-th record of the torn-record scenario is BIG_SIZE bytes long.
BIG_EVERY = 500
BIG_SIZE = 64 * 1024


def steps(index: int, count: int = 10) -> None:
    """The issue's worker: plain logging calls and nothing else."""
    for step in range(count):
        log.info("worker %d step %d", index, step)


def steps_returning(index: int, count: int) -> int:
    """Logs right before returning, as pool tasks do."""
    for step in range(count):
        log.info("task %d record %d", index, step)
    return index


def attach_then_steps(address: str, index: int, count: int) -> None:
    """A child that attaches by hand (twice, which must not double anything)."""
    logfunnel.attach(address)
    logfunnel.attach(address)
    steps_returning(index, count)


def exit_hard(index: int, count: int) -> None:
    """Log, then leave with os._exit: no atexit, no flush, nothing of Python's shutdown."""
    steps_returning(index, count)
    os._exit(1)


def wait_for_kill(index: int, count: int, logged: Any, never: Any) -> None:
    """Log, tell the parent the calls returned, then wait to be SIGKILLed."""
    steps_returning(index, count)
    logged.set()
    never.wait(60)
    os._exit(3)


def raise_after(index: int, count: int) -> None:
    """Log, then die of an uncaught exception."""
    steps_returning(index, count)
    raise RuntimeError(f"worker {index} failed on purpose")


def torn_message(index: int, number: int) -> str:
    """The exact text record ``number`` of worker ``index`` must arrive with."""
    if number % BIG_EVERY == 0:
        head = f"w{index} n{number} big "
        return head + "x" * (BIG_SIZE - len(head))
    if number % 7 == 0:
        return f"w{index} n{number} line one\n  line two\n  line three"
    return f"w{index} n{number} short"


def many_mixed(index: int, count: int) -> None:
    """Short, multi-line and 64 KiB messages, as fast as possible."""
    for number in range(count):
        log.info("%s", torn_message(index, number))


class Unpicklable:
    """An argument no pickle and no JSON can carry."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __str__(self) -> str:
        return "unpicklable-but-printable"


class BrokenStr:
    """An argument whose __str__ and __repr__ raise."""

    def __str__(self) -> str:
        raise ValueError("no str for you")

    def __repr__(self) -> str:
        raise ValueError("no repr either")


def bad_inputs() -> None:
    """Each of the issue's bad inputs once; none may escape into this caller."""
    log.warning("unpicklable %s", Unpicklable())
    log.warning("broken str %s", BrokenStr())
    log.warning("lone surrogate \ud800 here")
    log.warning("huge %s", "h" * (10 * 1024 * 1024))
    log.warning("odd extra", extra={"obj": object(), "numbers": {1, 2}, "nested": {"a": [1, None]}})
    log.warning("done with bad inputs")


def record_attributes() -> None:
    """One record with every attribute the sinks may format."""
    try:
        raise KeyError("boom")
    except KeyError:
        log.error("failed for %s", "alice", exc_info=True, stack_info=True, extra={"user": "alice"})


def levels() -> None:
    """Records at every level; the funnel decides which are even sent."""
    log.debug("debug record")
    log.info("info record")
    log.warning("warning record")
    log.error("error record")


def forks_a_grandchild() -> None:
    """An attached child forks; its own child must connect on its own."""
    log.info("child before fork")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        log.info("grandchild %d", os.getpid())
        os.write(write_fd, b"k")
        os._exit(0)
    os.close(write_fd)
    os.read(read_fd, 1)
    os.waitpid(pid, 0)
    log.info("child after fork")


def root_and_handler_level() -> tuple[int, int]:
    """The child's root level and its funnel handler's level, as attach() left them."""
    handler = logfunnel.attached()
    assert handler is not None
    return logging.getLogger().level, handler.level


def mixed_message(index: int, number: int) -> str:
    """Record ``number`` of worker ``index`` in the line-mode scenario: mostly one
    line, sometimes several lines, a NUL, non-ASCII text or more than fits a line."""
    head = f"w{index} n{number}"
    if number % 101 == 0:
        return f"{head} long " + "y" * 70_000
    if number % 13 == 0:
        return f"{head} nul \0 inside"
    if number % 11 == 0:
        return f"{head} first line\n  second line"
    if number % 7 == 0:
        return f"{head} h\u00e9llo \u2713"
    return f"{head} short"


def mixed_records(index: int, count: int) -> None:
    """``mixed_message`` records, then one with a traceback."""
    for number in range(count):
        log.info("%s", mixed_message(index, number))
    try:
        raise ValueError(f"w{index} failed on purpose")
    except ValueError:
        log.exception("w%d n%d traceback", index, count)


def routed_records(index: int, count: int, lines: bool | None) -> None:
    """Records on loggers with and without handlers of their own in the parent (see
    test_routed_lines), at every level, some of several lines, then two tracebacks.
    ``lines``: whether this process must be in line mode (None: not attached)."""
    if lines is not None:
        handler = logfunnel.attached()
        assert handler is not None
        assert (handler.config.get("lines") is not None) == lines, handler.config
    app, lib, sub = (logging.getLogger(n) for n in ("app", "lib", "lib.sub"))
    quiet, library = logging.getLogger("quiet.part"), logging.getLogger("library")
    for n in range(count):
        head = f"w{index} n{n}"
        app.info("%s app", head)
        if n % 3 == 0:
            lib.debug("%s lib debug", head)
        if n % 3 == 1:
            sub.info("%s lib.sub info", head)
        if n % 5 == 0:
            quiet.debug("%s quiet debug", head)
            quiet.warning("%s quiet warning", head)
        if n % 7 == 0:
            app.debug("%s app debug", head)
            library.info("%s library info", head)
        if n % 11 == 0:
            app.info("%s app first line\n  second line", head)
        if n % 13 == 0:
            sub.warning("%s lib.sub first line\n  second line", head)
    for logger in (app, sub):
        try:
            raise ValueError(f"w{index} {logger.name} failed on purpose")
        except ValueError:
            logger.exception("w%d %s traceback", index, logger.name)
