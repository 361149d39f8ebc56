"""Attaching a process: its loggers behave as the parent's and send to the collector.

``attach`` is the one call a process needs (``Funnel.context()`` children and
the pool initializer make it for you); ``detach`` undoes it.
"""

from __future__ import annotations

import os
import threading
from logging import Handler, Logger, getLogger

from .._protocol._address import ENV_ADDRESS, AttachError, parse_address
from .._protocol._loggers import LoggerState, route_names
from .._protocol._loggers import apply as apply_loggers
from .._protocol._loggers import restore as restore_loggers
from ._handler import FunnelHandler, write_stderr

# typing is for the type checker only: every worker imports this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl

__all__ = ["attach", "attached", "detach", "set_aside"]

_attach_lock = threading.RLock()


class _Attachment:
    """One ``attach()``: its handler and what it set aside, for ``detach()``."""

    __slots__ = ("handler", "loggers", "set_aside")

    def __init__(
        self,
        handler: FunnelHandler,
        set_aside: list[tuple[Logger, list[Handler]]],
        loggers: LoggerState | None,
    ) -> None:
        self.handler = handler
        #: Each logger the handler was put on, with the handlers it had.
        self.set_aside = set_aside
        #: Levels and flags before the parent's were applied.
        self.loggers = loggers


# Innermost last.
_attachments: list[_Attachment] = []


def attach(
    address: str | None = None,
    *,
    key: bytes | str | None = None,
    level: int | None = None,
    timeout: float = 10.0,
    fallback: bool = False,
    tls: ssl.SSLContext | None = None,
) -> FunnelHandler:
    """Make this process log as the funnel's parent does, into the collector at ``address``.

    The collector's handshake answer carries the parent's logger
    configuration as it stood when the funnel started (see ``_loggers``): the
    root level, ``logging.disable()``, every configured logger's level,
    ``propagate`` and ``disabled``. They are applied here, so a worker's
    loggers filter as the parent's do under every start method. The root
    logger, and every logger that has handlers of its own in the parent,
    send to the collector instead of their own handlers, which are set aside
    while attached, so nothing is written twice or by two processes.

    The handler's level is the lowest level any sink accepts (records no sink
    wants are never sent), or ``level``. Attaching again to the same address
    returns the same handler. It works as a pool initializer:
    ``Pool(n, initializer=logfunnel.attach, initargs=(funnel.address,))``.

    For a ``tls://`` address, ``tls`` is the client context to use; without
    it one is made from ``$LOGFUNNEL_TLS_CA`` (the CA that signed the
    collector's certificate; unset: the system's trust store) and, for a
    collector that wants client certificates, ``$LOGFUNNEL_TLS_CERT`` and
    ``$LOGFUNNEL_TLS_KEY``. The collector's host name is checked.

    Raises ``AttachError`` if no collector answers within ``timeout`` seconds,
    or with ``fallback=True`` says so in one line on stderr and attaches all
    the same: records then go to stderr and are counted, as they do when a
    collector goes away later.
    """
    text = address or os.environ.get(ENV_ADDRESS)
    if not text:
        raise ValueError(
            f"attach() needs an address: pass the Funnel's .address or set ${ENV_ADDRESS}"
        )
    wanted = parse_address(text, key)
    root = getLogger()
    with _attach_lock:
        if _attachments:
            current = _attachments[-1].handler
            if current._address == wanted and current in root.handlers:
                if level is not None:
                    current.setLevel(level)
                if current._sock is None:
                    # A fork child inherits the handler without a connection:
                    # make it now, so attach() means "connected" here too.
                    try:
                        current.connect()
                    except AttachError as exc:
                        if not fallback:
                            raise
                        _say_not_attached(exc)
                return current
        handler = FunnelHandler(text, key=key, timeout=timeout, tls=tls)
        try:
            config = handler.connect()
        except AttachError as exc:
            if not fallback:
                handler.close()
                raise
            _say_not_attached(exc)
            config = {}
        except BaseException:
            handler.close()
            raise
        handler.setLevel(level if level is not None else int(config.get("level", 0)))
        state = config.get("loggers")
        loggers = None
        names = [""]
        if isinstance(state, dict):
            loggers = apply_loggers(state, handler)
            names += route_names(state)
        set_aside = []
        for name in names:
            logger = getLogger(name) if name else root
            set_aside.append((logger, logger.handlers[:]))
            for old in logger.handlers[:]:
                logger.removeHandler(old)
            logger.addHandler(handler)
        if len(names) > 1:
            handler._on_several_loggers()
        _attachments.append(_Attachment(handler, set_aside, loggers))
        return handler


def _say_not_attached(exc: AttachError) -> None:
    write_stderr(f"logfunnel: pid {os.getpid()} could not attach: {exc}\n")


def detach(handler: FunnelHandler | None = None) -> None:
    """Undo ``attach``: loggers get their previous handlers, levels and flags back.

    With ``handler``, only that attachment is undone (a no-op if it is not
    the current one); without, the most recent one.
    """
    with _attach_lock:
        if not _attachments:
            return
        if handler is not None and _attachments[-1].handler is not handler:
            return
        attachment = _attachments.pop()
        current = attachment.handler
        for logger, handlers in reversed(attachment.set_aside):
            logger.removeHandler(current)
            for old in handlers:
                logger.addHandler(old)
        if attachment.loggers is not None:
            restore_loggers(attachment.loggers)
        current.close()


def attached() -> FunnelHandler | None:
    """The handler this process sends through, or None."""
    with _attach_lock:
        return _attachments[-1].handler if _attachments else None


def set_aside(logger: Logger, handlers: list[Handler]) -> None:
    """Take ``handlers`` off ``logger`` until ``detach()``, as ``attach()`` does with its own.

    For configuration that runs after ``attach()`` and would write what the
    funnel already writes (see ``_startup``).
    """
    with _attach_lock:
        if not _attachments:
            return
        for old in handlers:
            logger.removeHandler(old)
        set_aside = _attachments[-1].set_aside
        for index, (known, kept) in enumerate(set_aside):
            if known is logger:
                set_aside[index] = (known, kept + handlers)
                return
        set_aside.append((logger, handlers))


def _after_fork_in_child() -> None:
    global _attach_lock
    # Another thread of the parent may have been inside attach() or detach()
    # at the fork; it does not exist here, so its hold on the lock must go.
    _attach_lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
