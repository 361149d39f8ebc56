"""The parent's logger configuration, carried to every attached process.

In one process, ``logging.getLogger("noisy").setLevel(logging.ERROR)`` or a
handler on ``logging.getLogger("audit")`` applies to every logging call. Under
fork a child inherits that state, but under spawn and forkserver it starts
with a fresh ``logging`` module: levels set in the parent are lost and
records for the parent's non-root handlers go nowhere (the complaint of
joblib#1017 and dask#2592). Under fork it is worse the other way: the child
writes into its inherited copy of the parent's file handlers, the very
problem of several processes on one file.

So the funnel takes a snapshot when it starts: the root level, the
``logging.disable()`` level, and the level, ``propagate`` and ``disabled``
flags of every logger that has been configured, plus the names of the loggers
that carry handlers of their own (*routes*). The collector sends it in its
handshake answer; ``attach()`` applies it, and puts the process's
``FunnelHandler`` in place of the handlers of every route logger, so a record
takes the same way up the logger tree as in the parent. The collector then
hands it to the route loggers' real handlers and, if it propagates that far,
to the root sinks: as if it had been logged in the parent.

Only plain data crosses: names, numbers and flags. Handler objects stay in
the process that made them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

# typing is for the type checker only: every worker imports this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


__all__ = [
    "LoggerState",
    "UnderRoutes",
    "apply",
    "configured_loggers",
    "has_own_handlers",
    "restore",
    "route_names",
    "snapshot",
]

#: What ``apply`` changed, so that ``detach`` can put it back:
#: (logger, level, propagate, disabled) per logger, and the disable level.
LoggerState = tuple[list[tuple[logging.Logger, int, bool, bool]], int]


def configured_loggers() -> Iterable[tuple[str, logging.Logger]]:
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            yield name, logger


def has_own_handlers(logger: logging.Logger) -> bool:
    """Whether records reaching ``logger`` are written by a handler of its own.

    A ``NullHandler`` writes nothing (libraries add one to stay quiet), so it
    makes no route.
    """
    return any(type(h) is not logging.NullHandler for h in logger.handlers)


def snapshot() -> dict[str, Any]:
    """The logger configuration of this process, as JSON-safe data for the handshake."""
    loggers: dict[str, list[Any]] = {}
    for name, logger in configured_loggers():
        routed = has_own_handlers(logger)
        if logger.level or not logger.propagate or logger.disabled or routed:
            loggers[name] = [logger.level, logger.propagate, logger.disabled, routed]
    return {
        "root": logging.getLogger().level,
        "disable": logging.Logger.manager.disable,
        "loggers": loggers,
    }


def apply(state: Mapping[str, Any], handler: logging.Handler) -> LoggerState:
    """Make this process's loggers behave as the parent's ``snapshot`` says.

    The root level, the disable level, and each configured logger's level and
    flags are set. Route loggers get ``handler`` in place of their own
    handlers: the caller sets those aside (see ``route_names``). Malformed
    entries are skipped: a handshake must never stop a program from logging.
    Returns what was there before, for ``restore``.
    """
    manager = logging.Logger.manager
    root = logging.getLogger()
    before: list[tuple[logging.Logger, int, bool, bool]] = [
        (root, root.level, root.propagate, root.disabled)
    ]
    old_disable = manager.disable
    level = state.get("root")
    if isinstance(level, int):
        root.setLevel(level)
    disable = state.get("disable")
    if isinstance(disable, int):
        logging.disable(disable)
    loggers = state.get("loggers")
    if isinstance(loggers, dict):
        for name, entry in loggers.items():
            if not (isinstance(name, str) and isinstance(entry, list) and len(entry) == 4):
                continue
            level, propagate, disabled, _ = entry
            if not (isinstance(level, int) and isinstance(propagate, bool)):
                continue
            logger = logging.getLogger(name)
            before.append((logger, logger.level, logger.propagate, logger.disabled))
            logger.setLevel(level)
            logger.propagate = propagate
            logger.disabled = bool(disabled)
    return before, old_disable


def restore(state: LoggerState) -> None:
    """Undo ``apply``."""
    loggers, disable = state
    for logger, level, propagate, disabled in reversed(loggers):
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled
    logging.disable(disable)


def route_names(state: Mapping[str, Any]) -> list[str]:
    """The loggers whose records must reach handlers of their own in the parent."""
    loggers = state.get("loggers")
    if not isinstance(loggers, dict):
        return []
    return [
        name
        for name, entry in loggers.items()
        if isinstance(name, str) and isinstance(entry, list) and entry[3:] == [True]
    ]


#: The most logger names an ``UnderRoutes`` remembers before it starts afresh.
_UNDER_ROUTES_CACHE = 4096


class UnderRoutes(dict[str, bool]):
    """Whether a logger name is a route logger's or below one (``a.b`` is below ``a``).

    In line mode a producer asks this for every record it sends, so it is a
    dict of the answers: one lookup once a name was seen; the first time,
    ``__missing__`` walks the name's ancestors, as the collector's routes do.
    """

    def __init__(self, names: Iterable[str]) -> None:
        super().__init__()
        self._names = frozenset(names)

    def __missing__(self, name: str) -> bool:
        names = self._names
        current = name
        under = False
        while current:
            if current in names:
                under = True
                break
            cut = current.rfind(".")
            current = current[:cut] if cut > 0 else ""
        if len(self) >= _UNDER_ROUTES_CACHE:
            self.clear()
        self[name] = under
        return under
