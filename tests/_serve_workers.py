"""What the producers of the ``logfunnel serve`` tests run: importable by name in spawn
children."""

from __future__ import annotations

import logging
from typing import Any

from _strategy_workers import log_records

import logfunnel


def attach_and_log(address: str, worker: int, count: int, pace: float = 0.0) -> None:
    """Attach to a serve at ``address`` (with its key) and log ``count`` numbered records,
    ``pace`` seconds apart, at INFO, its own root level; ending the process must deliver
    them."""
    logging.getLogger().setLevel(logging.INFO)
    logfunnel.attach(address)
    log_records(worker, count, pace=pace)


def own_levels(address: str, done: Any) -> None:
    """A program with its own root level (DEBUG) attaches; report the level it has after."""
    logging.getLogger().setLevel(logging.DEBUG)
    logfunnel.attach(address)
    logging.getLogger("worker").debug("debug of its own")
    done.put(logging.getLogger().level)
