"""Dask: every worker of a ``distributed`` cluster logs into a funnel.

``attach_workers(client, address)`` registers a ``WorkerPlugin`` with the
scheduler. The scheduler keeps registered worker plugins and hands them to
every worker that registers with it later, so workers that scaling adds and
those a nanny starts again after a crash attach as they join, with no code in
the tasks. ``detach_workers(client)`` removes the plugin, and each worker
detaches in its ``teardown``, which Dask also runs when a worker closes.

Each worker calls ``logfunnel.attach()``, so it logs as the funnel's process
does (root level, ``logging.disable()``, configured loggers) and its handler
sits on the root logger: records of every thread, the task threads included,
go to the funnel in the order each process logged them. That is what
``Client.forward_logging`` does not give: it sends every record as an event
through the scheduler with no acknowledgement (its maintainers advise against
it for chatty loggers, dask/distributed#7276), and it leaves workers' levels
at their defaults (dask#2033, dask#2592).

The plugin carries the address, and with ``send_key=True`` the TCP key, in
its pickle: it travels through Dask's own comms to the scheduler, which keeps
it, and to every worker. On a network that is not trusted, use Dask's TLS
(``tls://`` and ``distributed.comm.tls``), or ``send_key=False`` with
``LOGFUNNEL_KEY`` set in the workers' environment.

A worker that starts runs no task before its plugins are set up (it handles
the scheduler's messages only after that), so a new worker's first task is
already attached. A worker killed with SIGKILL loses nothing its logging
calls returned from: over a Unix socket those records are in the kernel, and
over TCP the collector writes what was sent and acknowledges it (only a
worker that dies while its link is down too loses what was not acknowledged).

Only this module imports ``distributed``; ``import logfunnel`` never does.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Protocol

from distributed.diagnostics.plugin import WorkerPlugin

from ._producer._attach import attach, attached, detach
from ._protocol._address import ENV_ADDRESS, AttachError, parse_address

if TYPE_CHECKING:
    from distributed import Client, Scheduler, Worker

    from ._producer._handler import FunnelHandler

__all__ = ["PLUGIN_NAME", "LogfunnelPlugin", "attach_workers", "detach_workers"]

#: The plugin's name on the scheduler: registering under the same name replaces
#: the plugin (Dask tears the old one down first), so a second
#: ``attach_workers`` moves workers to the new address instead of doubling records.
PLUGIN_NAME = "logfunnel"

#: What a worker's setup could not do, by plugin name, for ``attach_workers`` to report.
_failed: dict[str, str] = {}


class _HasAddress(Protocol):
    @property
    def address(self) -> str: ...


class LogfunnelPlugin(WorkerPlugin):
    """Attaches the worker it is set up on; detaches it at teardown.

    The connection is made in a thread, not on the worker's event loop: a
    collector that is slow to answer must not stop the worker's heartbeats.
    A worker that cannot reach the collector attaches all the same, with its
    records going to its stderr, counted, as when a collector goes away later,
    and says why in one line; ``attach_workers`` turns that into an error for
    the workers that exist when it is called.
    """

    idempotent = False  # registering again replaces: the address may have changed

    def __init__(self, address: str, name: str = PLUGIN_NAME, timeout: float = 10.0) -> None:
        self.address = address
        self.name = name
        self.timeout = timeout
        self._handler: FunnelHandler | None = None
        self._owned = False

    def __repr__(self) -> str:
        return f"<LogfunnelPlugin {self.name} {parse_address(self.address)}>"  # never the key

    def __getstate__(self) -> dict[str, object]:
        # A handler is this process's; a worker makes its own.
        return {"address": self.address, "name": self.name, "timeout": self.timeout}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    async def setup(self, worker: Worker) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._attach)

    async def teardown(self, worker: Worker) -> None:
        # close() waits for the last acknowledgements over TCP: not on the loop.
        await asyncio.get_running_loop().run_in_executor(None, self._detach)

    def _attach(self) -> None:
        _failed.pop(self.name, None)
        before = attached()
        try:
            handler = attach(self.address, timeout=self.timeout)
        except AttachError as exc:
            _failed[self.name] = str(exc)
            handler = attach(self.address, timeout=self.timeout, fallback=True)
        self._handler = handler
        # The worker may have been attached to this address already (it
        # started while a funnel exported its address): that attachment is not
        # ours to undo.
        self._owned = handler is not before

    def _detach(self) -> None:
        handler, self._handler = self._handler, None
        if handler is not None and self._owned:
            detach(handler)


def attach_workers(
    client: Client,
    address: str | _HasAddress | None = None,
    *,
    key: bytes | str | None = None,
    send_key: bool = True,
    name: str = PLUGIN_NAME,
    timeout: float = 10.0,
) -> None:
    """Attach every worker of ``client``'s cluster, now and later, to the funnel at ``address``.

    ``address`` is a running ``Funnel`` (its address, with its key), an
    address string (``tcp://HOST:PORT``, with ``?key=HEX`` or ``key=``), or
    None for this process's ``LOGFUNNEL_ADDRESS`` and ``LOGFUNNEL_KEY``,
    which a running funnel exports. A ``unix:`` address serves workers on this
    host only (a ``LocalCluster``); workers on other hosts need the funnel to
    listen on TCP on an address they can reach. ``send_key=False`` leaves the
    key out of the plugin: workers then take it from their own
    ``LOGFUNNEL_KEY``.

    Calling it again replaces the plugin (same ``name``): workers detach from
    the old address and attach to the new one. Raises ``AttachError``, with
    the plugin removed again, if a current worker cannot reach the collector
    within ``timeout``; ``ValueError`` for an address that is not one.
    """
    if address is not None and not isinstance(address, str):
        address = address.address
    text = address or os.environ.get(ENV_ADDRESS)
    if not text:
        raise ValueError(
            f"attach_workers() needs an address: a running Funnel, its .address, or ${ENV_ADDRESS}"
        )
    parsed = parse_address(text, key)
    if parsed.scheme == "tcp" and parsed.key is None and send_key:
        raise ValueError(
            f"no key for {parsed}: give key=, an address with ?key=, or set LOGFUNNEL_KEY "
            "(or send_key=False, with the key in the workers' environment)"
        )
    wire = parsed.with_key() if send_key else str(parsed)
    client.register_plugin(LogfunnelPlugin(wire, name, timeout), name=name)
    failures = {
        worker: why for worker, why in client.run(_setup_failure, name).items() if why is not None
    }
    if failures:
        detach_workers(client, name=name)
        listed = "; ".join(f"{worker}: {why}" for worker, why in sorted(failures.items()))
        raise AttachError(f"workers could not attach to {parsed}: {listed}")


def detach_workers(client: Client, *, name: str = PLUGIN_NAME) -> None:
    """Remove the plugin: every worker detaches (its loggers as before attaching), and
    workers that join later no longer attach. Does nothing if it is not registered."""
    # Asked first: the scheduler logs a traceback for a name it does not have.
    if client.run_on_scheduler(_registered, name):  # type: ignore[no-untyped-call]
        client.unregister_worker_plugin(name)  # type: ignore[no-untyped-call]


def _setup_failure(name: str) -> str | None:
    """Run on each worker: why its plugin could not attach it, or None."""
    return _failed.get(name)


def _registered(name: str, dask_scheduler: Scheduler) -> bool:
    """Run on the scheduler: whether a worker plugin of that name is registered."""
    return name in dask_scheduler.worker_plugins
