"""Multiprocessing contexts whose children attach to a funnel before user code runs.

A ``FunnelContext`` is a real ``multiprocessing`` context of the chosen
start method. It differs only in ``Process``: each process it makes carries
the funnel's address, a plain string that survives the spawn and forkserver
pickles, and attaches in ``run()``. ``Pool`` and ``ProcessPoolExecutor``
create their workers through ``ctx.Process``, so they need no initializer,
no ``Manager`` and no queue handed down.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context as mpc
import sys
from typing import Any

from .._protocol._address import parse_address
from ._children import attaching_run, tls_environment

__all__ = ["FunnelContext", "adopted_class", "funnel_context"]


class _AttachingProcess:
    """Mixin: attach, run, and log an uncaught exception as an ERROR record."""

    _logfunnel_address: str | None = None

    run = attaching_run


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

_ADOPTED: dict[type[Any], type[Any]] = {
    getattr(mpc, f"{kind.__name__[len('Funnel') :]}"): kind for kind in _PROCESS_CLASSES.values()
}


def adopted_class(process: Any) -> type[Any]:
    """The funnel's class for a process of the stdlib's own classes; other classes stay.

    A child of the funnel's class runs ``attaching_run``, whatever its own
    interpreter has patched. ``multiprocessing.Process`` starts with the
    default method, so it becomes that method's class.
    """
    kind: type[Any] = type(process)
    if kind is mpc.Process:
        method = multiprocessing.get_start_method(allow_none=True) or (
            multiprocessing.get_context().get_start_method()
        )
        return _PROCESS_CLASSES.get(method, kind)
    return _ADOPTED.get(kind, kind)


class FunnelContext(mpc.BaseContext):
    """A multiprocessing context whose Process, Pool and executor workers attach.

    Use it wherever a context goes: ``ctx.Process(...)``, ``ctx.Pool(...)``,
    ``ProcessPoolExecutor(mp_context=ctx)``. Everything else (queues,
    locks, events) behaves as in the plain context of the same start method.
    """

    def __init__(
        self, address: str, method: str | None = None, tls: dict[str, str] | None = None
    ) -> None:
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
        # For a tls:// address: the TLS files' variables each child sets (see _children).
        self._tls = tls if tls is not None else tls_environment(address)
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
        process._logfunnel_tls = self._tls
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
        return FunnelContext(self._address, method, self._tls)

    def set_start_method(self, method: str | None, force: bool = False) -> None:
        raise ValueError("a FunnelContext has a fixed start method; ask the funnel for another")

    def _check_available(self) -> None:
        self._base._check_available()

    def __repr__(self) -> str:
        return f"<FunnelContext {self._name} -> {parse_address(self._address)}>"


def funnel_context(address: str, method: str | None = None) -> FunnelContext:
    """A context for ``method`` (None: this platform's default) attached to ``address``."""
    return FunnelContext(address, method)
