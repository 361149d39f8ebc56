"""``Funnel(collector="process")``: a collector in a process of its own, outliving its parent.

The default collector is a thread of the parent: if the parent is SIGKILLed,
the records waiting in socket buffers die with it. A process collector is a
fresh interpreter running ``logfunnel._proccollector.main``, in a session of
its own, so a Ctrl-C meant for the program does not reach it. It holds the
listening socket and the sinks. The parent talks to it over a socket pair of
newline-delimited JSON: the sink configuration, ``stats`` and ``stop``.

Handler objects cannot cross a process boundary, so the sinks are given as
configuration: the ``Funnel`` shortcuts (``filename``, rotation,
``console``) and/or a ``logging.config.dictConfig`` dictionary, whose root
handlers become the sinks.

When the control socket reaches end-of-file without a ``stop``, the parent is
gone. The collector then keeps serving every producer until none has been
connected for ``LINGER`` seconds, drains, flushes and closes its sinks, removes
the private socket directory and exits. So every record any producer sent
before the parent died is written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import weakref
from collections.abc import Mapping
from typing import Any, Final

from .._protocol._address import ENV_ADDRESS, ENV_KEY, Address, parse_address
from .._protocol._loggers import snapshot
from .._sinks._config import SinkConfig
from .._sinks._routes import Routes, route_table
from ._listen import remove_private_dir
from ._loop import Collector, CollectorStats
from ._tls import TLSFiles, server_context

__all__ = ["LINGER", "ProcessCollector", "main"]

#: After its parent died, the collector exits once no producer has been
#: connected for this long (seconds).
LINGER: Final = 2.0
# How long the parent waits for the collector process to start (seconds).
_START_TIMEOUT: Final = 60.0
# How long stop() waits for the collector process to exit when no timeout is given.
_STOP_TIMEOUT: Final = 300.0

_live: weakref.WeakSet[ProcessCollector] = weakref.WeakSet()


class ProcessCollector:
    """The parent's handle on a collector process; same interface as ``Collector``."""

    def __init__(
        self,
        listener: socket.socket,
        address: Address,
        private_dir: str | None,
        sinks: SinkConfig,
        loggers: dict[str, Any] | None,
        *,
        final: bool = True,
        tls: TLSFiles | None = None,
    ) -> None:
        self._listener = listener
        self._address = address
        # Everything the process needs, as JSON (see main()).
        self._spec = {
            "sinks": sinks.to_json(),
            "loggers": loggers,
            "address": address.with_key(),
            "private_dir": private_dir,
            "sys_path": [p for p in sys.path if isinstance(p, str)],
            "cwd": os.getcwd(),
            "final": final,
            "tls": None if tls is None else tls.to_json(),
        }
        self._control: socket.socket | None = None
        self._reader: Any = None
        self._proc: Any = None
        self._lock = threading.Lock()
        self._final: CollectorStats | None = None
        self._owner_pid = os.getpid()
        #: The level the collector computed from its sinks.
        self.level = 0
        #: The collector process's pid.
        self.pid = 0
        _live.add(self)

    def start(self) -> None:
        """Start the process and wait until it serves; its start-up error is raised here."""
        import subprocess

        ours, theirs = socket.socketpair()
        listener_fd = self._listener.fileno()
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        # A collector never attaches to a funnel (an outer one's address may be set).
        env.pop(ENV_ADDRESS, None)
        env.pop(ENV_KEY, None)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        try:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "import sys; from logfunnel._collector._process import main; sys.exit(main())",
                    str(listener_fd),
                    str(theirs.fileno()),
                ],
                pass_fds=(listener_fd, theirs.fileno()),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        finally:
            theirs.close()
            self._listener.close()
        self._control = ours
        self._reader = ours.makefile("rb")
        self._send({"spec": self._spec})
        ours.settimeout(_START_TIMEOUT)
        reply = self._receive()
        ours.settimeout(None)
        if reply is None or "error" in reply:
            self._proc.wait(_START_TIMEOUT)
            why = reply["error"] if reply else f"exit code {self._proc.returncode}"
            raise RuntimeError(f"the logfunnel collector process did not start: {why}")
        self.level = int(reply["level"])
        self.pid = int(reply["pid"])

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the process to drain, flush and exit; False if it did not within ``timeout``."""
        if os.getpid() != self._owner_pid or self._proc is None:
            return True
        with self._lock:
            if self._control is not None:
                self._control.settimeout(_STOP_TIMEOUT if timeout is None else timeout)
                with contextlib.suppress(OSError):
                    self._send({"cmd": "stop"})
                    final = self._receive()
                    if final is not None and "stats" in final:
                        self._final = _stats_from_json(final["stats"])
                self._reader.close()
                self._control.close()
                self._control = None
        import subprocess

        try:
            self._proc.wait(_STOP_TIMEOUT if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and self._control is not None

    @property
    def stats(self) -> CollectorStats:
        """The collector process's counts (the final ones once it stopped)."""
        with self._lock:
            if self._control is None:
                return self._final if self._final is not None else CollectorStats()
            try:
                self._send({"cmd": "stats"})
                reply = self._receive()
            except OSError:  # the collector process is gone
                reply = None
        if reply is None:
            return self._final if self._final is not None else CollectorStats()
        self._final = _stats_from_json(reply["stats"])
        return self._final

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no producer is connected to the collector process."""
        with self._lock:
            if self._control is None:
                return True
            try:
                self._send({"cmd": "idle", "timeout": timeout})
                reply = self._receive()
            except OSError:  # the collector process is gone: nobody is connected
                return True
        return bool(reply and reply.get("idle"))

    def _send(self, message: dict[str, Any]) -> None:
        assert self._control is not None
        self._control.sendall(json.dumps(message).encode() + b"\n")

    def _receive(self) -> dict[str, Any] | None:
        line = self._reader.readline()
        if not line:
            return None
        value: dict[str, Any] = json.loads(line)
        return value


def _forget_in_fork_child() -> None:
    """A fork child must not keep the parent's control socket open.

    The collector process learns that the parent died from this socket's
    end-of-file. A copy held by a forked child would postpone that until the
    child exits, and the child is not the one to stop the collector.
    """
    for collector in list(_live):
        control, collector._control = collector._control, None
        if control is not None:
            with contextlib.suppress(OSError):
                collector._reader.close()  # it holds the descriptor open too
                control.close()
        collector._proc = None
    _live.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_fork_child)


def _stats_to_json(stats: CollectorStats) -> dict[str, Any]:
    data = dict(vars(stats))
    data["producers"] = sorted(stats.producers)
    return data


def _stats_from_json(data: dict[str, Any]) -> CollectorStats:
    data = dict(data)
    data["producers"] = {tuple(p) for p in data.get("producers", [])}
    known = CollectorStats.__dataclass_fields__
    return CollectorStats(**{k: v for k, v in data.items() if k in known})


# -- the collector process ----------------------------------------------------


def _build_sinks(config: SinkConfig) -> tuple[list[logging.Handler], int]:
    """The sinks of ``config`` (the dictConfig's root handlers, then the shortcuts) and
    the producers' level."""
    sinks: list[logging.Handler] = []
    root = logging.getLogger()
    if config.config is not None:
        from logging import config as logging_config

        logging_config.dictConfig(dict(config.config))
        sinks += root.handlers
    made = config.build()
    sinks += made
    handlers = [*sinks, *Routes(route_table()).handlers]
    level = min((sink.level for sink in handlers), default=0)
    # Records logged inside this process (by a sink's library, say) reach the same sinks.
    for sink in made:
        root.addHandler(sink)
    return sinks, level


def _merged_loggers(parent: Any, config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The parent's logger configuration, with what the dictConfig set on top.

    In one process, ``dictConfig`` would have set these loggers itself.
    """
    merged: dict[str, Any] = dict(parent) if isinstance(parent, dict) else snapshot()
    if config is None:
        return merged
    here = snapshot()
    loggers = dict(merged.get("loggers") or {})
    for name in config.get("loggers") or {}:
        if name in here["loggers"]:
            loggers[name] = here["loggers"][name]
    merged["loggers"] = loggers
    if "level" in (config.get("root") or {}):
        merged["root"] = here["root"]
    return merged


class _Serve:
    def __init__(self, collector: Collector, control: socket.socket) -> None:
        self.collector = collector
        self.control = control
        self.stop_requested = False

    def answer(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            self.control.sendall(json.dumps(message).encode() + b"\n")

    def follow_parent(self) -> bool:
        """Serve the parent's commands; True if it asked to stop, False if it is gone."""
        reader = self.control.makefile("rb")
        try:
            for line in reader:
                message = json.loads(line)
                command = message.get("cmd")
                if command == "stats":
                    self.answer({"stats": _stats_to_json(self.collector.stats)})
                elif command == "idle":
                    self.answer({"idle": self.collector.wait_idle(message.get("timeout"))})
                elif command == "stop":
                    return True
        except (OSError, ValueError):
            pass
        finally:
            reader.close()
        return self.stop_requested


def _linger(collector: Collector) -> None:
    """After the parent died: serve until no producer has been connected for ``LINGER`` s."""
    while True:
        collector.wait_idle()
        # Quiet now; a child that was still starting may yet connect.
        if not collector.wait_busy(LINGER):
            return


def main(argv: list[str] | None = None) -> int:
    """Entry point of the collector process: ``LISTENER_FD CONTROL_FD``."""
    args = sys.argv[1:] if argv is None else argv
    listener = socket.socket(fileno=int(args[0]))
    control = socket.socket(fileno=int(args[1]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    reader = control.makefile("rb")
    first = reader.readline()
    reader.close()
    if not first:
        return 1
    spec = json.loads(first)["spec"]
    try:
        for entry in reversed(spec["sys_path"]):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        with contextlib.suppress(OSError):
            os.chdir(spec["cwd"])
        address = parse_address(spec["address"])
        config = SinkConfig.from_json(spec["sinks"])
        sinks, level = _build_sinks(config)
        tls = spec.get("tls")
        collector = Collector(
            listener,
            address,
            sinks,
            level,
            overflow=config.overflow,
            routes=Routes(route_table()),
            loggers=(
                None if spec["loggers"] is None else _merged_loggers(spec["loggers"], config.config)
            ),
            final=spec.get("final", True),
            tls=None if tls is None else server_context(TLSFiles(**tls)),
        )
    except Exception as exc:
        control.sendall(json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode() + b"\n")
        return 1
    serve = _Serve(collector, control)

    def on_term(signum: int, frame: Any) -> None:
        serve.stop_requested = True
        with contextlib.suppress(OSError):
            control.shutdown(socket.SHUT_RD)

    signal.signal(signal.SIGTERM, on_term)
    collector.start()
    serve.answer({"ready": True, "level": level, "pid": os.getpid()})
    asked = serve.follow_parent()
    if not asked:
        collector._report(
            logging.WARNING,
            "logfunnel: the parent process is gone; the collector serves its producers"
            " until they are done",
        )
        _linger(collector)
    collector.stop()
    for sink in sinks:
        try:
            sink.flush()
        except Exception:
            sink.handleError(
                logging.LogRecord("logfunnel", logging.ERROR, __file__, 0, "flush failed", (), None)
            )
    if asked:
        serve.answer({"stats": _stats_to_json(collector.stats)})
    for sink in sinks:
        with contextlib.suppress(Exception):
            sink.close()
    if not asked:
        remove_private_dir(spec["private_dir"], address.path or None)
    control.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
