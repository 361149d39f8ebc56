"""What the producers of the ``logfunnel serve`` tests run: importable by name in spawn
children."""

from __future__ import annotations

from _strategy_workers import log_records

import logfunnel


def attach_and_log(address: str, worker: int, count: int, pace: float = 0.0) -> None:
    """Attach to a serve at ``address`` (with its key) and log ``count`` numbered records,
    ``pace`` seconds apart, at INFO with no level of its own (serve's decides); ending the
    process must deliver them."""
    logfunnel.attach(address)
    log_records(worker, count, pace=pace)
