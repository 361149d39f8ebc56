"""Where a worker's record goes among the parent's non-root handlers.

A record logged on ``a.b`` in a worker reaches the collector once (see
``_protocol._loggers``); here it takes the rest of its way up the parent's
logger tree, as ``Logger.callHandlers`` would have taken it in the parent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

from .._protocol._loggers import configured_loggers, has_own_handlers

__all__ = ["Routes", "route_table"]

#: The most logger names the collector remembers a route for.
_ROUTE_CACHE: Final = 4096


def route_table() -> dict[str, tuple[list[logging.Handler], bool]]:
    """The parent's route loggers, their real handlers and ``propagate``, for the collector.

    A logger that stops propagation but has no handler of its own is not in
    it: a worker applies the same flag, so none of its records is ever sent.
    """
    return {
        name: ([h for h in logger.handlers if type(h) is not logging.NullHandler], logger.propagate)
        for name, logger in configured_loggers()
        if has_own_handlers(logger)
    }


class Routes:
    """Where a record of a given logger name goes in the parent, cached by name.

    ``lookup`` walks the name's ancestors as ``Logger.callHandlers`` walks the
    logger tree: the handlers of each route logger on the way, until one that
    does not propagate; the root sinks only if none stops it.
    """

    def __init__(self, table: Mapping[str, tuple[list[logging.Handler], bool]]) -> None:
        self._table = dict(table)
        self._cache: dict[str, tuple[tuple[logging.Handler, ...], bool]] = {}

    def __bool__(self) -> bool:
        return bool(self._table)

    @property
    def names(self) -> list[str]:
        """The route loggers' names, sorted: what producers are told in line mode."""
        return sorted(self._table)

    @property
    def handlers(self) -> list[logging.Handler]:
        """Every route handler, once each."""
        seen: list[logging.Handler] = []
        for handlers, _ in self._table.values():
            seen.extend(h for h in handlers if all(h is not s for s in seen))
        return seen

    def lookup(self, name: str) -> tuple[tuple[logging.Handler, ...], bool]:
        """``(handlers, reaches_root)`` for a record of logger ``name``."""
        found = self._cache.get(name)
        if found is not None:
            return found
        handlers: list[logging.Handler] = []
        reaches_root = True
        table = self._table
        current = name
        while current:
            entry = table.get(current)
            if entry is not None:
                handlers.extend(entry[0])
                if not entry[1]:
                    reaches_root = False
                    break
            cut = current.rfind(".")
            current = current[:cut] if cut > 0 else ""
        found = (tuple(handlers), reaches_root)
        if len(self._cache) >= _ROUTE_CACHE:
            self._cache.clear()
        self._cache[name] = found
        return found
