"""What the Ray tests' workers run: importable by name in Ray's worker processes."""

from __future__ import annotations

import logging
import os

import logfunnel

#: The environment variable the setup-hook recipe reads its address from.
ADDRESS_VARIABLE = "APP_LOG_ADDRESS"


def log_task(task: int, count: int) -> int:
    """Log ``count`` numbered INFO records and one DEBUG record; the worker's pid."""
    log = logging.getLogger("task")
    log.debug("T%d debug, below the funnel's level", task)
    for number in range(count):
        log.info("T%d N%d", task, number)
    return os.getpid()


def attach_from_environment() -> None:
    """A ``worker_process_setup_hook``: attach to the address the runtime_env gave."""
    logfunnel.attach(os.environ[ADDRESS_VARIABLE])
