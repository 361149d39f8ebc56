"""``Funnel``: the parent's side, one collector plus its sinks, as a context manager."""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import os
import sys
import threading
import weakref
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._collector._listen import listen, remove_private_dir
from ._collector._loop import Collector, CollectorStats
from ._collector._process import ProcessCollector
from ._collector._tls import TLSFiles, server_context
from ._inherit import Export, end_reusable_workers, export, withdraw
from ._json import JSONFormatter
from ._producer._attach import attach, detach
from ._producer._children import adopt_children, release_children, tls_environment
from ._producer._context import FunnelContext
from ._producer._handler import FunnelHandler
from ._protocol._loggers import snapshot
from ._sigterm import SigtermDrain
from ._sinks._config import DEFAULT_FORMAT, SinkConfig
from ._sinks._routes import Routes, route_table

if TYPE_CHECKING:
    import ssl

__all__ = ["DEFAULT_FORMAT", "Funnel"]


class Funnel:
    """Collect the records of every process into one set of sinks.

    Sinks, in order of precedence:

    * ``handlers=[...]``: any ``logging.Handler`` objects, each with its own
      formatter, level and filters, exactly as in one process;
    * ``filename`` (with ``max_bytes``/``backups`` for size rotation, or
      ``when``/``interval`` for time rotation), ``console=True`` and/or
      ``otlp="http://host:4318"`` (an OpenTelemetry OTLP/HTTP endpoint, through
      ``logfunnel.otel.OTLPHandler``; needs the ``otel`` extra);
    * none of these: the root logger's current handlers, so ``logging.basicConfig``
      or ``dictConfig`` followed by ``Funnel()`` just works.

    While it runs, this process is attached too, so its own records join the
    same stream as the children's. On exit (or ``stop()``) everything already
    sent is written, then sinks the funnel owns are flushed and closed. Sinks
    taken from the root logger are flushed and given back to it.

    Every attached process logs as this one does (see ``attach``): the root
    level, each configured logger's level, ``propagate`` and ``disabled``
    flags and ``logging.disable()`` as they stand at ``start()`` reach it,
    and records for handlers on non-root loggers reach those handlers through
    the collector, as if logged here. So set levels as in one process:
    ``level`` sets the root logger's level while the funnel runs, as
    ``logging.basicConfig(level=...)`` does; without it no level is changed.
    Producers do not even send records that no sink accepts.

    While it runs, its address is in the environment (``LOGFUNNEL_ADDRESS``,
    and ``LOGFUNNEL_KEY`` for TCP and TLS, ``LOGFUNNEL_TLS_CA`` for TLS), so
    every process started meanwhile inherits it, and every Python one among
    them attaches itself as it starts (the startup hook): subprocesses,
    joblib's workers, executors a library makes. ``stop()`` puts back what
    was there. joblib's (loky's) reusable pool of workers is shut down when a
    funnel starts and stops, so its workers always have the current funnel's
    address. ``inherit=False`` leaves the environment alone; then only
    processes that ``attach()`` or come from ``context()`` join.

    While it runs, SIGTERM to this process drains the funnel first, then ends
    the process as SIGTERM would, unless the program handles SIGTERM itself.

    ``formatter=logfunnel.JSONFormatter(...)`` makes the shortcut sinks
    write JSON lines instead of ``fmt``; as with a ``JSONFormatter`` on any
    plain file or stream sink, the producers format them and line mode stays
    on.

    ``config``, a ``logging.config.dictConfig`` dictionary, gives sinks as
    data, beside the shortcuts (so the command line and a collector process
    can take them): its root handlers become sinks, and the handlers it puts
    on other loggers get those loggers' records, as above. With the default
    ``collector="thread"`` it is applied in this process when the funnel
    starts, as calling ``dictConfig`` there would: it replaces this process's
    logging configuration (closing the handlers that existed, so it does not
    go with ``handlers=[...]``), and it stays after ``stop()``, its handlers
    flushed, as root handlers taken over are; the shortcut sinks are then
    made at ``start()``, after it.

    ``collector="process"`` runs the collector in a process of its own that
    outlives this one: if this process is killed, every record already sent
    is still written and the sinks flushed. Its sinks are then given as
    configuration, the shortcuts and/or ``config``, which is applied in the
    collector process and leaves this one's logging as it was. The default
    ``collector="thread"`` runs in this process, so if this process is
    SIGKILLed, records still in socket buffers are lost with it, and the
    producers' later records go to their stderr fallback.

    ``overflow="block"`` (the default) makes a producer wait while the
    collector is behind, so nothing is lost. ``overflow="drop"`` is for
    programs that must never wait: a record that does not fit in the socket
    buffer is dropped, and the count of drops reaches the sinks as a record.

    ``final=False`` is for a collector that another one may replace on the
    same TCP address, with the same key (``logfunnel serve``, restarted). At
    ``stop()`` it writes what was sent, as always, but does not tell its
    producers that it is gone: over TCP they keep what was not acknowledged
    and send it again to the next collector that listens there (meanwhile
    their logging calls wait, or drop, as ``overflow`` says, once their
    resend buffer is full). The default, ``final=True``, tells them, and
    what they log afterwards goes to their stderr fallback. Over a Unix
    socket producers are never told, and it changes nothing.

    ``listen="tls://HOST:PORT"`` is TCP inside TLS. ``tls_cert`` (and
    ``tls_key``, unless the certificate file holds the key) are the
    collector's certificate; with ``tls_client_ca`` every producer must show
    a client certificate signed by that CA (mutual TLS). Producers are known
    by the ``key``, by their certificates, or by both; a TLS funnel with
    neither is refused (``ValueError``), since anyone who reaches the port
    could log into it. ``tls_ca`` is the CA file that signed ``tls_cert``,
    for this process's own producer and, exported as ``LOGFUNNEL_TLS_CA``,
    for its children (unset: the system's trust store). Producers check the
    certificate against the address's host name. Under mutual TLS this
    process and its children show the certificate that
    ``LOGFUNNEL_TLS_CERT`` and ``LOGFUNNEL_TLS_KEY`` name.

    ``mirror_loggers=False`` is for a collector that is not the program its
    producers belong to (``logfunnel serve``): they keep their own levels and
    logger flags instead of taking this process's, and send what their own
    loggers let through (down to the lowest level any sink takes).
    """

    def __init__(
        self,
        filename: str | os.PathLike[str] | None = None,
        *,
        handlers: Iterable[logging.Handler] | None = None,
        console: bool = False,
        level: int | str | None = None,
        max_bytes: int = 0,
        backups: int = 5,
        when: str | None = None,
        interval: int = 1,
        utc: bool = False,
        encoding: str = "utf-8",
        fmt: str = DEFAULT_FORMAT,
        datefmt: str | None = None,
        formatter: JSONFormatter | Mapping[str, Any] | None = None,
        listen: str | None = None,
        key: bytes | None = None,
        attach_main: bool = True,
        collector: str = "thread",
        config: dict[str, object] | None = None,
        overflow: str = "block",
        inherit: bool = True,
        final: bool = True,
        mirror_loggers: bool = True,
        otlp: str | None = None,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        tls_client_ca: str | os.PathLike[str] | None = None,
        tls_ca: str | os.PathLike[str] | None = None,
    ) -> None:
        if collector not in ("thread", "process"):
            raise ValueError(f"collector must be 'thread' or 'process', not {collector!r}")
        self._tls_files: TLSFiles | None = None
        if tls_cert is not None:
            self._tls_files = TLSFiles(
                os.path.abspath(tls_cert),
                None if tls_key is None else os.path.abspath(tls_key),
                None if tls_client_ca is None else os.path.abspath(tls_client_ca),
            )
        elif tls_key is not None or tls_client_ca is not None:
            raise ValueError("tls_key and tls_client_ca go with tls_cert (and a tls:// listen)")
        self._tls_ca = None if tls_ca is None else os.path.abspath(tls_ca)
        #: What the funnel makes, as plain data, checked here once.
        self.sink_config = SinkConfig(
            filename=None if filename is None else os.fspath(filename),
            console=console,
            max_bytes=max_bytes,
            backups=backups,
            when=when,
            interval=interval,
            utc=utc,
            encoding=encoding,
            fmt=fmt,
            datefmt=datefmt,
            formatter=formatter,
            config=config,
            overflow=overflow,
            otlp=otlp,
        )
        self._in_process = collector == "process"
        self._owned: list[logging.Handler] = []
        if self._in_process:
            if handlers is not None:
                raise TypeError(
                    'collector="process" cannot take handler objects (they cannot cross '
                    "processes); give filename=..., console=True and/or config={...}"
                )
            if not self.sink_config.has_sinks:
                raise ValueError(
                    'collector="process" needs its sinks as configuration: filename=..., '
                    "console=True and/or config={...} (a logging.config.dictConfig dictionary)"
                )
            sinks: list[logging.Handler] = []  # they live in the collector process
        elif config is not None:
            if handlers is not None:
                raise TypeError(
                    "config={...} cannot go with handlers=[...]: dictConfig closes every "
                    "handler that exists when it runs; put them in the config instead"
                )
            sinks = []  # made by start(): the config's root handlers, then the shortcuts
        elif handlers is None and not self.sink_config.has_sinks:
            sinks = list(logging.getLogger().handlers) or [_last_resort()]
        else:
            sinks = list(handlers or ())
            self._owned = sinks + self.sink_config.build()
            sinks = self._owned[:]
        for sink in sinks:
            if not isinstance(sink, logging.Handler):
                raise TypeError(f"sinks must be logging.Handler objects, not {type(sink).__name__}")
        self.sinks: tuple[logging.Handler, ...] = tuple(sinks)
        # The root level asked for, set while the funnel runs (None: left alone).
        self._root_level: int | None = (
            None if level is None else logging._checkLevel(level)  # type: ignore[attr-defined]
        )
        self._root_level_before: int | None = None
        #: The producers' level: the lowest any sink accepts (known at start).
        self.level = _lowest(sinks)
        self._listen = listen
        self._key = key
        self._attach_main = attach_main
        self._inherit = inherit
        self._final = final
        self._mirror_loggers = mirror_loggers
        self._export: Export | None = None
        self._collector: Collector | ProcessCollector | None = None
        self._handler: FunnelHandler | None = None
        self._address: str | None = None
        # The address without its key: what may be printed.
        self._display = ""
        self._private_dir: str | None = None
        self._socket_path: str | None = None
        self._owner_pid = os.getpid()
        # Handlers of non-root loggers that the collector writes to (not owned).
        self._routed: list[logging.Handler] = []
        self._state_lock = threading.Lock()
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Funnel:
        """Start the collector and attach this process; a second call raises."""
        with self._state_lock:
            if self._collector is not None or self._stopped:
                raise RuntimeError("a Funnel can be started once")
            if self.sink_config.config is not None and not self._in_process:
                self._configure_here()
            # A TLS context is made first: a bad certificate file is refused before
            # anything listens.
            context = None if self._tls_files is None else server_context(self._tls_files)
            sock, address, private_dir = listen(self._listen, self._key, self._tls_files)
            self._private_dir = private_dir
            self._socket_path = address.path or None
            self._address = address.with_key()
            self._display = str(address)
            if self._root_level is not None:
                root = logging.getLogger()
                self._root_level_before = root.level
                root.setLevel(self._root_level)
            # The loggers as they stand now are what every attached process gets.
            loggers = snapshot() if self._mirror_loggers else None
            if self._in_process:
                self._collector = ProcessCollector(
                    sock,
                    address,
                    private_dir,
                    self.sink_config,
                    loggers,
                    final=self._final,
                    tls=self._tls_files,
                )
                self._collector.start()
                self.level = self._collector.level
            else:
                routes = Routes(route_table())
                self._routed = routes.handlers
                self.level = _lowest([*self.sinks, *routes.handlers])
                self._collector = Collector(
                    sock,
                    address,
                    self.sinks,
                    self.level,
                    overflow=self.sink_config.overflow,
                    routes=routes,
                    loggers=loggers,
                    final=self._final,
                    tls=context,
                )
                self._collector.start()
        if self._attach_main:
            self._handler = attach(self._address, tls=self._client_context(address.scheme))
            # Children this process makes through plain multiprocessing are
            # attached by inheritance (fork) or by the startup hook: their
            # crashes are records too.
            adopt_children()
        if self._inherit:
            self._export = export(address, self._tls_ca)
            end_reusable_workers()
        # Forgetting stop() must not lose the tail of the log.
        atexit.register(_stop_at_exit, weakref.ref(self))
        _on_sigterm.add(self)
        return self

    def _client_context(self, scheme: str) -> ssl.SSLContext | None:
        """For a TLS funnel's own producer: checks the funnel's certificate with ``tls_ca``."""
        if scheme != "tls":
            return None
        from ._producer._tls import client_context

        return client_context(ca=self._tls_ca)

    def _configure_here(self) -> None:
        """Apply ``config`` in this process; its root handlers, then the shortcuts, are the sinks.

        The shortcut sinks are made only now: dictConfig closes every handler
        that exists when it runs.
        """
        from logging import config as logging_config

        assert self.sink_config.config is not None
        # A copy: dictConfig rewrites parts of what it is given, and the
        # configuration is the funnel's to keep.
        logging_config.dictConfig(json.loads(json.dumps(self.sink_config.config)))
        self._owned = self.sink_config.build()
        self.sinks = (*logging.getLogger().handlers, *self._owned)

    def stop(self, timeout: float | None = None) -> None:
        """Drain, flush and close. Idempotent; does nothing in a fork child."""
        if os.getpid() != self._owner_pid:
            return
        with self._state_lock:
            if self._stopped:
                return
            self._stopped = True
        with _on_sigterm.stopping():
            self._stop(timeout)
        _on_sigterm.discard(self)

    def _stop(self, timeout: float | None) -> None:
        if self._export is not None:
            withdraw(self._export)
            end_reusable_workers()
        if self._handler is not None:
            detach(self._handler)
            release_children()
        if self._root_level_before is not None:
            logging.getLogger().setLevel(self._root_level_before)
        if self._collector is not None:
            self._collector.stop(timeout)
        for sink in (*self.sinks, *self._routed):
            try:
                sink.flush()
            except Exception:
                sink.handleError(_flush_failure_record(sink))
        for sink in self._owned:
            try:
                sink.close()
            except Exception:  # a full disk fails the last flush: say so, stop anyway
                sink.handleError(_flush_failure_record(sink))
        remove_private_dir(self._private_dir, self._socket_path)

    def __enter__(self) -> Funnel:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what users pass around --------------------------------------------

    @property
    def address(self) -> str:
        """The string a process passes to ``attach()``: works in initargs, env and pickles."""
        if self._address is None:
            raise RuntimeError("start the Funnel first (use it in a with-block or call start())")
        return self._address

    def context(self, method: str | None = None) -> FunnelContext:
        """A multiprocessing context ("fork", "spawn", "forkserver", None: the default)
        whose Process, Pool and ProcessPoolExecutor children attach before they run."""
        tls = tls_environment(self.address, LOGFUNNEL_TLS_CA=self._tls_ca)
        return FunnelContext(self.address, method, tls)

    @property
    def stats(self) -> CollectorStats:
        """Counts kept by the collector: records, connections, bad frames, gaps."""
        if self._collector is None:
            raise RuntimeError("the Funnel has not been started")
        return self._collector.stats

    def _note(self, level: int, msg: str, *args: object) -> None:
        """A record of logger ``logfunnel`` from the collector itself, to the sinks in the
        collector's order (what ``logfunnel serve`` says of its start and stop). Only the
        thread collector takes it; for ``collector="process"`` it raises TypeError."""
        if not isinstance(self._collector, Collector):
            raise TypeError("only a running thread collector takes notes")
        self._collector.note(level, msg, *args)

    @property
    def running(self) -> bool:
        return self._collector is not None and self._collector.running and not self._stopped

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped" if self._stopped else "new"
        return f"<Funnel {state} {self._display} sinks={len(self.sinks)}>"


#: Drains every running funnel of this process on SIGTERM (see ``_sigterm``).
_on_sigterm = SigtermDrain()


def _stop_at_exit(ref: weakref.ref[Funnel]) -> None:
    funnel = ref()
    if funnel is not None:
        funnel.stop()


def _lowest(handlers: Iterable[logging.Handler]) -> int:
    return min((handler.level for handler in handlers), default=0)


def _last_resort() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    return handler


def _flush_failure_record(sink: logging.Handler) -> logging.LogRecord:
    return logging.LogRecord(
        "logfunnel", logging.ERROR, __file__, 0, "flush of %r failed", (sink,), None
    )
