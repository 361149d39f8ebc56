"""Functions run in child processes by test_fidelity_edges.py (importable under spawn)."""

from __future__ import annotations

import logging
import multiprocessing
import os
from typing import Any

import logfunnel


def every_level(name: str) -> None:
    """One record per level on logger ``name``."""
    log = logging.getLogger(name)
    log.debug("%s debug", name)
    log.info("%s info", name)
    log.warning("%s warning", name)
    log.error("%s error", name)


def logger_state(names: list[str]) -> dict[str, Any]:
    """How this process's loggers stand: levels, flags, handlers, disable level."""
    handler = logfunnel.attached()
    state: dict[str, Any] = {
        "root": logging.getLogger().level,
        "disable": logging.root.manager.disable,
        "handler_level": None if handler is None else handler.level,
    }
    for name in names:
        logger = logging.getLogger(name)
        state[name] = (
            logger.level,
            logger.propagate,
            logger.disabled,
            [type(h).__name__ for h in logger.handlers],
        )
    return state


def name_of_process() -> str:
    """The name of the process running this (a pool worker's, say)."""
    return multiprocessing.current_process().name


def log_my_name() -> None:
    logging.getLogger("names").warning("hello from %s", os.getpid())


def crash_with_stack() -> None:
    """A record with stack_info, then an uncaught exception."""
    logging.getLogger("crash").warning("before the crash", stack_info=True)
    raise ValueError("crashed on purpose")


def log_after_stop(logged: Any, stopped: Any, count: int) -> None:
    """Log once, wait until the funnel has stopped, then log ``count`` records."""
    logging.getLogger("late").warning("before the stop")
    logged.set()
    assert stopped.wait(60)
    for number in range(count):
        logging.getLogger("late").warning("late record %d", number)


def wait_for_eof(reader: Any, writer: Any, timeout: float) -> None:
    """Wait until every process has closed ``writer`` (this one first), then end with 0."""
    writer.close()
    reader.poll(timeout)
