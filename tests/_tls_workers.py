"""What the producers of the TLS tests run: importable by name in spawn children."""

from __future__ import annotations

import logging
from typing import Any

import logfunnel

log = logging.getLogger("worker")


def flood_noting_drops(count: int, ready: Any, go: Any, done: Any) -> None:
    """Once attached and told to go, log ``count`` numbered 1 KiB records; report the
    numbers of those the drop policy dropped."""
    handler = logfunnel.attached()
    assert handler is not None
    ready.release()
    assert go.wait(60)
    payload = "d" * 1024
    dropped = []
    for number in range(count):
        before = handler.dropped
        log.info("drop n%d %s", number, payload)
        if handler.dropped != before:
            dropped.append(number)
    done.put(dropped)
