"""Multiprocessing contexts whose children attach to a funnel before user code runs.

A ``FunnelContext`` is a real ``multiprocessing`` context of the chosen
start method. It differs only in ``Process``: each process it makes carries
the funnel's address, a plain string that survives the spawn and forkserver
pickles, and attaches in ``run()``. ``Pool`` and ``ProcessPoolExecutor``
create their workers through ``ctx.Process``, so they need no initializer,
no ``Manager`` and no queue handed down.
"""

from __future__ import annotations

import linecache
import logging
import multiprocessing
import multiprocessing.context as mpc
import multiprocessing.process as mpp
import sys
import traceback
import types
from collections.abc import Callable
from typing import Any

from .._protocol._address import parse_address
from ._attach import attach, attached

__all__ = ["FunnelContext", "funnel_context"]

_crash_log = logging.getLogger("logfunnel")


def _begin(process: Any) -> None:
    address = process._logfunnel_address
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
        mpp.BaseProcess.run(self)
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
    code = mpp.BaseProcess.run.__code__
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


class _AttachingProcess:
    """Mixin: attach, run, and log an uncaught exception as an ERROR record."""

    _logfunnel_address: str | None = None

    run = _make_run()


class FunnelSpawnProcess(_AttachingProcess, mpc.SpawnProcess):
    """A spawn-started process that attaches to a funnel first."""


_PROCESS_CLASSES: dict[str, type[Any]] = {"spawn": FunnelSpawnProcess}
_BASE_CONTEXTS: dict[str, type[Any]] = {"spawn": mpc.SpawnContext}

if sys.platform != "win32":

    class FunnelForkProcess(_AttachingProcess, mpc.ForkProcess):
        """A fork-started process that attaches to a funnel first."""

    class FunnelForkServerProcess(_AttachingProcess, mpc.ForkServerProcess):
        """A forkserver-started process that attaches to a funnel first."""

    _PROCESS_CLASSES["fork"] = FunnelForkProcess
    _PROCESS_CLASSES["forkserver"] = FunnelForkServerProcess
    _BASE_CONTEXTS["fork"] = mpc.ForkContext
    _BASE_CONTEXTS["forkserver"] = mpc.ForkServerContext


class FunnelContext(mpc.BaseContext):
    """A multiprocessing context whose Process, Pool and executor workers attach.

    Use it wherever a context goes: ``ctx.Process(...)``, ``ctx.Pool(...)``,
    ``ProcessPoolExecutor(mp_context=ctx)``. Everything else (queues,
    locks, events) behaves as in the plain context of the same start method.
    """

    def __init__(self, address: str, method: str | None = None) -> None:
        if method is None:
            method = multiprocessing.get_start_method(allow_none=True) or (
                multiprocessing.get_context().get_start_method()
            )
        if method not in _PROCESS_CLASSES:
            raise ValueError(
                f"start method {method!r} is not available here; "
                f"choose one of {sorted(_PROCESS_CLASSES)}"
            )
        self._address = address
        self._name = method
        self._base = _BASE_CONTEXTS[method]()
        self._process_class = _PROCESS_CLASSES[method]

    @property
    def address(self) -> str:
        """The funnel address every child attaches to."""
        return self._address

    def Process(self, *args: Any, **kwargs: Any) -> Any:
        process = self._process_class(*args, **kwargs)
        process._logfunnel_address = self._address
        # The stdlib names a process after its class ("SpawnProcess-3", and a
        # pool renames that "SpawnPoolWorker-3"): keep the stdlib's names, which
        # formats and log parsers know, not the subclass's.
        default = f"{type(process).__name__}-{':'.join(map(str, process._identity))}"
        if process.name == default:
            process.name = default[len("Funnel") :]
        return process

    def get_start_method(self, allow_none: bool = False) -> str:
        return self._name

    def get_context(self, method: str | None = None) -> Any:
        if method is None or method == self._name:
            return self
        return FunnelContext(self._address, method)

    def set_start_method(self, method: str | None, force: bool = False) -> None:
        raise ValueError("a FunnelContext has a fixed start method; ask the funnel for another")

    def _check_available(self) -> None:
        self._base._check_available()

    def __repr__(self) -> str:
        return f"<FunnelContext {self._name} -> {parse_address(self._address)}>"


def funnel_context(address: str, method: str | None = None) -> FunnelContext:
    """A context for ``method`` (None: this platform's default) attached to ``address``."""
    return FunnelContext(address, method)
