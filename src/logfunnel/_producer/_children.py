"""How ``multiprocessing`` children of an attached process attach, crash and end.

A child started through a funnel's context runs ``attaching_run`` instead of
``BaseProcess.run``: it attaches to the address the process carries, logs
an uncaught exception as an ERROR record with the traceback the stdlib
prints, and flushes before the stdlib's ``os._exit``.

``adopt_children()`` extends that to the children a process makes with
plain ``multiprocessing`` (``Process``, ``Pool``, ``ProcessPoolExecutor``
of any context) while it is attached, in a funnel's own process and in
every process the startup hook attached. A child pickled to be started
(spawn, forkserver) carries the address its parent is attached to, and one
of the stdlib's own process classes arrives as the funnel's class of the
same start method; a fork child inherits its parent's attachment. So a child
attaches to its parent's funnel whatever its start method, even where the
environment it inherits is older than the funnel (a forkserver started
before it). For a ``tls://`` address the TLS files' environment variables
(``LOGFUNNEL_TLS_CA``, ``_CERT``, ``_KEY``: paths, never the files) travel
with it, for the same reason. This module needs ``multiprocessing.process`` only, so it can be
put in place while ``multiprocessing`` itself is still being imported.
"""

from __future__ import annotations

import linecache
import logging
import multiprocessing.process as mpp
import sys
import traceback
import types
from collections.abc import Callable
from typing import Any

from .._protocol._address import ENV_TLS_CA, ENV_TLS_CERT, ENV_TLS_KEY
from ._attach import attach, attached

__all__ = ["adopt_children", "attaching_run", "release_children"]

#: ``BaseProcess.run`` as the stdlib defines it, before anything replaced it.
_STDLIB_RUN: Callable[[Any], None] = mpp.BaseProcess.run

_crash_log = logging.getLogger("logfunnel")


def tls_environment(address: str, **given: str | None) -> dict[str, str] | None:
    """For a ``tls://`` address: the TLS variables a child needs, as this process has them
    (``given`` first: ``LOGFUNNEL_TLS_CA=...``); None for another address."""
    if not address.startswith("tls:"):
        return None
    import os

    names = (ENV_TLS_CA, ENV_TLS_CERT, ENV_TLS_KEY)
    found = {name: given.get(name) or os.environ.get(name) for name in names}
    return {name: value for name, value in found.items() if value}


def _begin(process: Any) -> None:
    address = getattr(process, "_logfunnel_address", None)
    tls = getattr(process, "_logfunnel_tls", None)
    if tls:
        import os

        # Where the child's environment is older than the funnel (a forkserver).
        for name, value in tls.items():
            os.environ.setdefault(name, value)
    if address is not None:
        # A child that starts after its funnel stopped still runs: its
        # records go to stderr, counted, as they would a moment later.
        attach(address, fallback=True)


def _crashed(process: Any) -> None:
    """Log the uncaught exception that ends ``process``, then end it as the stdlib would.

    The stdlib prints this traceback to the child's stderr only; it also goes
    where the rest of the log is, as an ERROR record. The traceback is the one
    the stdlib prints: it starts at ``_bootstrap``, where the stdlib catches it.
    """
    _, exc, tb = sys.exc_info()
    assert exc is not None
    run_frame = sys._getframe(1)
    caller = run_frame.f_back
    if caller is not None and tb is not None:
        tb = types.TracebackType(tb, caller, caller.f_lasti, caller.f_lineno)
    _crash_log.error(
        "process %s ended by an uncaught exception",
        process.name,
        exc_info=(type(exc), exc, tb),
    )
    sys.stderr.write(f"Process {process.name}:\n")
    traceback.print_exception(type(exc), exc, tb)
    raise SystemExit(1)  # the stdlib's exit code for it, with nothing more printed


def _end(process: Any) -> None:
    # multiprocessing ends its children with os._exit, so no atexit handler
    # (logging.shutdown) runs: flush and say what could not be sent, while we can.
    handler = attached()
    if handler is not None:
        handler.flush()
        handler.report_losses()


def _plain_run(self: Any) -> None:
    _begin(self)
    try:
        _STDLIB_RUN(self)
    except Exception:
        _crashed(self)
    finally:
        _end(self)


def _make_run() -> Callable[[Any], None]:
    """``run()`` for attaching processes, whose frame reads as the stdlib's own.

    Every traceback and ``stack_info`` of a child shows the frame of
    ``run()``. So that they read exactly as without logfunnel, the function
    is compiled with ``BaseProcess.run``'s file name and with its target call
    at that file's line, in the stdlib's own text: the frame a user sees is
    ``multiprocessing/process.py``, ``run``, ``self._target(...)``, as always.
    The lines before and after it (attach, crash record, flush) never run
    while the target does, so they never appear. If the stdlib's source is
    not what is expected, an ordinary function does the same work.
    """
    code = _STDLIB_RUN.__code__
    lines = [line for _, _, line in code.co_lines() if line is not None]
    call = max(lines, default=0)
    text = linecache.getline(code.co_filename, call)
    if call < 6 or text.strip() != "self._target(*self._args, **self._kwargs)":
        return _plain_run
    indent = len(text) - len(text.lstrip(" "))
    if indent <= 8:
        return _plain_run
    source = "\n" * (call - 5) + (
        "def run(self):\n"
        "    _begin(self)\n"
        "    try:\n"
        "        if self._target:\n"
        f"{text.rstrip()}\n"
        "    except Exception:\n"
        "        _crashed(self)\n"
        "    finally:\n"
        "        _end(self)\n"
    )
    try:
        module = compile(source, code.co_filename, "exec")
    except SyntaxError:
        return _plain_run
    # The function's code is a constant of the module's: made, never executed.
    body = next(c for c in module.co_consts if isinstance(c, types.CodeType))
    namespace = {"_begin": _begin, "_crashed": _crashed, "_end": _end, "__name__": __name__}
    run: Callable[[Any], None] = types.FunctionType(body, namespace, "run")
    run.__qualname__ = "_AttachingProcess.run"
    return run


#: The ``run()`` of attaching processes (one function, made once).
attaching_run = _make_run()

# How many owners (running funnels, the startup hook) want them in place.
_users = 0


def _reduce_ex(self: Any, protocol: Any) -> Any:
    """Pickle a process (spawn and forkserver do, to start it) with its parent's funnel.

    Done while pickling rather than in ``start()``, so that no frame of
    logfunnel's is on a fork child's stack (``start()`` is).
    """
    own_reduce: object = type(self).__reduce__
    if own_reduce is not object.__reduce__:
        return object.__reduce_ex__(self, protocol)
    kind, state = type(self), self.__dict__
    handler = attached()
    if handler is not None and state.get("_logfunnel_address") is None:
        from ._context import adopted_class

        kind = adopted_class(self)
        address = handler._address.with_key()
        state = {
            **state,
            "_logfunnel_address": address,
            "_logfunnel_tls": tls_environment(address),
        }
    return _rebuild, (kind, state)


def _rebuild(kind: type[Any], state: dict[str, Any]) -> Any:
    """Unpickle what ``_reduce_ex`` pickled, as pickle's default would have."""
    process = object.__new__(kind)
    process.__dict__.update(state)
    return process


def adopt_children() -> None:
    """Make every ``multiprocessing`` child started from now on attach as the funnel's do.

    A process subclass that overrides ``run()`` keeps its own, so only the
    startup hook (under spawn) attaches it, and the stdlib alone prints an
    uncaught exception of its ``run()``.
    """
    global _users
    _users += 1
    if mpp.BaseProcess.run is _STDLIB_RUN:
        mpp.BaseProcess.run = attaching_run  # type: ignore[method-assign,assignment]
    if "__reduce_ex__" not in vars(mpp.BaseProcess):
        mpp.BaseProcess.__reduce_ex__ = _reduce_ex  # type: ignore[method-assign]


def release_children() -> None:
    """Undo one ``adopt_children()``; the last one puts the stdlib's methods back."""
    global _users
    _users = max(0, _users - 1)
    if _users == 0:
        if mpp.BaseProcess.run is attaching_run:
            mpp.BaseProcess.run = _STDLIB_RUN  # type: ignore[method-assign,assignment]
        if vars(mpp.BaseProcess).get("__reduce_ex__") is _reduce_ex:
            del mpp.BaseProcess.__reduce_ex__
