"""What the producers of the link tests run: importable by name in spawn children."""

from __future__ import annotations

from _strategy_workers import log_records

import logfunnel


def attach_and_log(address: str, worker: int, count: int) -> None:
    """Attach to ``address`` (a proxy, say) and log ``count`` numbered records; no flush,
    no detach: ending the process must deliver them."""
    logfunnel.attach(address)
    log_records(worker, count)
