"""What the pools and executors of the library tests run: importable by name in their workers.

Zero code: nothing here imports logfunnel or sets up logging. The workers
attach because the funnel that starts them exports its address.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

log = logging.getLogger("worker")

#: Records each task logs.
STEPS = 3


def log_task(tag: str, number: int) -> int:
    """Log ``STEPS`` INFO records ``TAG NUMBER STEP`` and return this worker's pid."""
    for step in range(STEPS):
        log.info("%s %d %d", tag, number, step)
    return os.getpid()


def log_task_args(args: tuple[str, int]) -> int:
    """``log_task`` for ``Pool.map``, which passes one argument."""
    return log_task(*args)


def meet_then_log(tag: str, number: int, barrier: Any) -> int:
    """Wait until every worker of the pool has a task of its own, then ``log_task``."""
    barrier.wait(60)
    return log_task(tag, number)


def end_own_worker(tag: str, how: str) -> None:
    """Log one record, then end this worker: ``os._exit`` or SIGKILL to itself."""
    log.info("%s ends its worker", tag)
    if how == "exit":
        os._exit(3)
    os.kill(os.getpid(), signal.SIGKILL)
