"""The ways to get one log from many processes, each as a small self-contained scenario.

A way has two halves. The parent half (``open``, ``drain``, ``close``) runs in
the harness: it starts whatever listener, collector or manager the way needs
and, once every worker has reported, waits until everything is in the output.
The child half (``child``) runs in each worker: it sets up that process's
logging the way a user of that approach would, and returns the call to time.

Workers are started by the harness through ``launch``, so every way uses the
same start method, the same barrier and the same measurements. The child half
is looked up by name in ``WAYS`` because spawn children import this module
afresh. Third-party peers are imported only inside their own way, so a missing
one costs nothing until it is asked for.
"""

from __future__ import annotations

import array
import importlib.util
import logging
import logging.handlers
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final, NamedTuple

import logfunnel
from logfunnel import DEFAULT_FORMAT

from . import INSTALL
from ._workload import FMT_BRACES, FMT_PERCENT, marker, padding

__all__ = [
    "COMPARED",
    "WAYS",
    "BenchError",
    "Emitter",
    "Spec",
    "Way",
    "Workers",
    "worker_main",
]

_LOGGER: Final = "bench"
_LOGURU_FORMAT: Final = (
    "{time:YYYY-MM-DD HH:mm:ss,SSS} {process.name}[{process.id}] {level} {name}: {message}"
)
_EXTRA_HINT: Final = f"not installed ({INSTALL})"


class BenchError(RuntimeError):
    """A way could not run to the end (a worker failed, or it timed out)."""


@dataclass(frozen=True)
class Spec:
    """What one run does; picklable, so spawn children get it as an argument."""

    method: str
    processes: int
    records: int
    size: int
    directory: str
    #: Records per second per worker for paced runs (latency); 0: as fast as possible.
    rate: float = 0.0
    #: Record the time from each logging call to its write in the sink.
    latency: bool = False


class Emitter(NamedTuple):
    """The child half's answer: the call to time, its format, and how to finish."""

    emit: Callable[..., object]
    fmt: str
    finish: Callable[[], None]


def _nothing() -> None:
    """Finishing for ways whose logging call returns only once the record is out."""


class LatencyProbe:
    """The stream of a second text sink placed after the file sink: when each
    record's line was written, to set against when its logging call was made.

    It is an exact ``StreamHandler`` with the file sink's formatter, so the
    collector treats it as the file's twin and keeps line mode, the path that
    ``Funnel(path)`` takes; a probe that needed the record would measure frames.
    Times are kept in flat arrays, one slot per record, so that the probe
    itself does not grow the harness's memory, where the collector's is measured.
    """

    def __init__(self, workers: int, records: int) -> None:
        self.written = [array.array("d", [-1.0]) * records for _ in range(workers)]

    def handler(self) -> logging.Handler:
        handler = logging.StreamHandler(self)
        handler.setFormatter(logging.Formatter(DEFAULT_FORMAT))
        return handler

    def write(self, text: str) -> int:
        now = time.time()
        for line in text.splitlines():
            key = marker(line)
            if key is not None and 0 <= key[0] < len(self.written):
                times = self.written[key[0]]
                if 0 <= key[1] < len(times) and times[key[1]] < 0:
                    times[key[1]] = now
        return len(text)

    def flush(self) -> None:
        pass

    def ages(self, reports: list[dict[str, Any]]) -> array.array[float]:
        """Seconds from each logging call (the workers' ``called`` times) to its write."""
        ages = array.array("d")
        for report in reports:
            called = array.array("d")
            called.frombytes(report["called"])
            written = self.written[report["index"]]
            ages.extend(w - c for w, c in zip(written, called, strict=True) if w >= 0)
        return ages


class _CountingFileHandler(logging.FileHandler):
    """A file sink that notes when the last expected record was written.

    Needed where a way's own shutdown polls (multiprocessing-logging checks
    for new records every 0.2 s), so that its throughput is not charged for
    that wait.
    """

    def __init__(self, path: str, expected: int) -> None:
        super().__init__(path, encoding="utf-8")
        self.expected = expected
        self.count = 0
        self.done_at: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        self.count += 1
        if self.count == self.expected:
            self.done_at = time.monotonic()


def _from_logfunnel(name: str) -> Any:
    """A class that newer versions of logfunnel have (the way checked it exists)."""
    return getattr(logfunnel, name)


def _peer(module: str) -> Any:
    """A third-party peer, imported only when its way runs (and untyped on purpose:
    the type check must not depend on the optional extra being installed)."""
    return importlib.import_module(module)


def _file_sink(path: str) -> logging.FileHandler:
    """What ``Funnel(filename)`` writes with, for the ways that bring their own writer."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(DEFAULT_FORMAT))
    return handler


def _own_root(handler: logging.Handler) -> Emitter:
    """Make ``handler`` the only root handler (fork children inherit the parent's)."""
    if handler.formatter is None:
        handler.setFormatter(logging.Formatter(DEFAULT_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return Emitter(logging.getLogger(_LOGGER).info, FMT_PERCENT, handler.close)


# -- the workers -----------------------------------------------------------------

_pool_sync: tuple[Any, Any, Any] | None = None


def worker_main(
    name: str, arg: object, index: int, spec: Spec, ready: Any, go: Any, results: Any
) -> None:
    """One worker: set up, say ready, wait for the start, log, finish, report.

    The report holds this process's CPU time from the start to the end of
    ``finish`` (all its threads, so a queue's feeder thread counts), the
    caller's own CPU time in the logging loop, and its start and end times.
    """
    told_ready = False
    try:
        emitter = WAYS[name].child(arg, index, spec)
        records = spec.records * spec.processes if WAYS[name].one_process else spec.records
        pad = padding(spec.size)
        emit, fmt = emitter.emit, emitter.fmt
        ready.release()
        told_ready = True
        go.wait()
        start = time.monotonic()
        cpu0 = time.process_time()
        call0 = time.thread_time()
        called = array.array("d")
        if spec.rate > 0:
            interval = 1.0 / spec.rate
            due = start
            sleep, now, stamp = time.sleep, time.monotonic, time.time
            called = array.array("d", bytes(8 * records))
            for seq in range(records):
                ahead = due - now()
                if ahead > 0:
                    sleep(ahead)
                called[seq] = stamp()
                emit(fmt, index, seq, pad)
                due += interval
        else:
            for seq in range(records):
                emit(fmt, index, seq, pad)
        call1 = time.thread_time()
        emitter.finish()
        cpu1 = time.process_time()
        end = time.monotonic()
    except BaseException as exc:
        results.put({"index": index, "error": f"{type(exc).__name__}: {exc}"})
        if not told_ready:
            ready.release()
        raise
    results.put(
        {
            "index": index,
            "records": records,
            "start": start,
            "end": end,
            "cpu": cpu1 - cpu0,
            "caller": call1 - call0,
            "called": called.tobytes(),
        }
    )


def _pool_init(ready: Any, go: Any, results: Any) -> None:
    """Pool initializer: the barrier and result queue can only be inherited, not sent."""
    global _pool_sync
    _pool_sync = (ready, go, results)


def _pool_task(name: str, arg: object, index: int, spec: Spec) -> None:
    assert _pool_sync is not None
    worker_main(name, arg, index, spec, *_pool_sync)


class Workers:
    """The started worker processes, as the harness sees them."""

    def __init__(self, processes: Sequence[Any]) -> None:
        self.processes = list(processes)

    def failure(self) -> str | None:
        """Why a worker ended badly, or None while all are fine."""
        for proc in self.processes:
            if proc.exitcode not in (None, 0):
                return f"worker {proc.name} exited with code {proc.exitcode}"
        return None

    def join(self) -> None:
        for proc in self.processes:
            proc.join()

    def kill(self) -> None:
        for proc in self.processes:
            if proc.is_alive():
                proc.kill()
        for proc in self.processes:
            proc.join()


class _PoolWorkers(Workers):
    def __init__(self, pool: Any, tasks: Sequence[Any]) -> None:
        super().__init__([])
        self.pool = pool
        self.tasks = list(tasks)

    def failure(self) -> str | None:
        for task in self.tasks:
            if task.ready() and not task.successful():
                try:
                    task.get(0)
                except Exception as exc:
                    return f"pool task failed: {type(exc).__name__}: {exc}"
        return None

    def join(self) -> None:
        self.pool.close()
        self.pool.join()

    def kill(self) -> None:
        self.pool.terminate()
        self.pool.join()


# -- the ways --------------------------------------------------------------------


class Way:
    """One approach, its parent half and its child half."""

    name: ClassVar[str]
    label: ClassVar[str]
    #: One worker logs every record (processes x records): the one-process baselines.
    one_process: ClassVar[bool] = False
    #: False for the floor, which writes nothing to read back.
    audited: ClassVar[bool] = True
    #: Where the single writer runs: "parent" (a thread in the harness), "helper"
    #: (processes in ``helper_pids``) or "" (each worker writes for itself).
    writer: ClassVar[str] = ""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.child_arg: object = None
        self.latency: LatencyProbe | None = None
        if spec.latency:
            self.latency = LatencyProbe(spec.processes, spec.records)

    @property
    def path(self) -> str:
        return os.path.join(self.spec.directory, "bench.log")

    @classmethod
    def unavailable(cls, method: str) -> str | None:
        """Why this way cannot run here, or None."""
        return None

    def open(self) -> None:
        """Start the way's listener or collector (parent side)."""

    def context(self) -> Any:
        """The multiprocessing context that starts this way's workers."""
        return multiprocessing.get_context(self.spec.method)

    def launch(self, ready: Any, go: Any, results: Any) -> Workers:
        count = 1 if self.one_process else self.spec.processes
        ctx = self.context()
        procs = [
            ctx.Process(
                target=worker_main,
                args=(self.name, self.child_arg, i, self.spec, ready, go, results),
                name=f"bench-{i}",
            )
            for i in range(count)
        ]
        for proc in procs:
            proc.start()
        return Workers(procs)

    def helper_pids(self) -> list[int]:
        return []

    def drain(self) -> float | None:
        """Every worker has reported: wait until all is written.

        Returns when the last record was written if the way knows better
        than "now".
        """
        return None

    def close(self) -> None:
        """Release everything; also called after a failure, so it must not raise."""

    def outputs(self) -> list[Path]:
        return sorted(p for p in Path(self.spec.directory).iterdir() if p.is_file())

    @staticmethod
    def child(arg: Any, index: int, spec: Spec) -> Emitter:
        raise NotImplementedError


class LogfunnelWay(Way):
    name = "logfunnel"
    label = "logfunnel collector (Funnel with a file sink)"
    writer = "parent"

    def open(self) -> None:
        # The workers log INFO: the root level says so, as it would in one process.
        if self.latency is None:
            self.funnel = logfunnel.Funnel(self.path, level="INFO")
        else:
            # What Funnel(path) builds, with the latency probe after the file sink.
            sinks = [_file_sink(self.path), self.latency.handler()]
            self.funnel = logfunnel.Funnel(handlers=sinks, level="INFO")
        self.funnel.start()

    def context(self) -> Any:
        return self.funnel.context(self.spec.method)

    def drain(self) -> float | None:
        self.funnel.stop()
        return None

    def close(self) -> None:
        funnel = getattr(self, "funnel", None)
        if funnel is not None:
            funnel.stop()

    @staticmethod
    def child(arg: Any, index: int, spec: Spec) -> Emitter:
        # The funnel's context attached this process before it ran us.
        return Emitter(logging.getLogger(_LOGGER).info, FMT_PERCENT, _nothing)


class LogfunnelTcpWay(LogfunnelWay):
    name = "logfunnel-tcp"
    label = "logfunnel collector over loopback TCP (HMAC, acknowledged)"

    def open(self) -> None:
        if self.latency is not None:
            raise BenchError("logfunnel-tcp has no latency variant")
        self.funnel = logfunnel.Funnel(self.path, level="INFO", listen="tcp://127.0.0.1:0")
        self.funnel.start()


class LogfunnelTlsWay(LogfunnelWay):
    name = "logfunnel-tls"
    label = "logfunnel collector over loopback TLS (HMAC inside TLS, acknowledged)"

    @classmethod
    def unavailable(cls, method: str) -> str | None:
        if importlib.util.find_spec("trustme") is None:
            return "trustme (which makes the run's certificate) is not installed"
        return None

    def open(self) -> None:
        import shutil
        import tempfile

        import trustme

        if self.latency is not None:
            raise BenchError("logfunnel-tls has no latency variant")
        # Not in the run's directory: every file there is read back as output.
        self.pki = tempfile.mkdtemp(prefix="bench-tls-")
        self.remove_pki = lambda: shutil.rmtree(self.pki, ignore_errors=True)
        ca = trustme.CA()
        cert = os.path.join(self.pki, "server.pem")
        ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(cert)
        ca_file = os.path.join(self.pki, "ca.pem")
        ca.cert_pem.write_to_path(ca_file)
        self.funnel = logfunnel.Funnel(
            self.path,
            level="INFO",
            listen="tls://127.0.0.1:0",
            key=os.urandom(32),
            tls_cert=cert,
            tls_ca=ca_file,
        )
        self.funnel.start()

    def close(self) -> None:
        super().close()
        remove = getattr(self, "remove_pki", None)
        if remove is not None:
            remove()


class LogfunnelJsonWay(LogfunnelWay):
    name = "logfunnel-json"
    label = "logfunnel collector, JSON lines (Funnel with formatter=JSONFormatter())"

    @classmethod
    def unavailable(cls, method: str) -> str | None:
        if not hasattr(logfunnel, "JSONFormatter"):
            return "logfunnel.JSONFormatter is not in this version"
        return None

    def open(self) -> None:
        if self.latency is not None:
            raise BenchError("logfunnel-json has no latency variant")
        formatter = _from_logfunnel("JSONFormatter")()
        self.funnel = logfunnel.Funnel(self.path, level="INFO", formatter=formatter)
        self.funnel.start()


class LockedFileWay(Way):
    name = "logfunnel-locked"
    label = "logfunnel LockedFileHandler (lock around each write)"

    @classmethod
    def unavailable(cls, method: str) -> str | None:
        if not hasattr(logfunnel, "LockedFileHandler"):
            return "logfunnel.LockedFileHandler is not in this version"
        return None

    @staticmethod
    def child(arg: Any, index: int, spec: Spec) -> Emitter:
        handler_class = _from_logfunnel("LockedFileHandler")
        return _own_root(handler_class(os.path.join(spec.directory, "bench.log")))


class ProcessFilesWay(Way):
    name = "logfunnel-process-files"
    label = "logfunnel ProcessFileHandler (one file per process)"

    @classmethod
    def unavailable(cls, method: str) -> str | None:
        if not hasattr(logfunnel, "ProcessFileHandler"):
            return "logfunnel.ProcessFileHandler is not in this version"
        return None

    @staticmethod
    def child(arg: Any, index: int, spec: Spec) -> Emitter:
        handler_class = _from_logfunnel("ProcessFileHandler")
        # Its default file name pattern, in this run's directory; it keeps its own line format.
        pattern = os.path.join(spec.directory, "logfunnel-{host}-{pid}-{start}.log")
        return _own_root(handler_class(pattern))


class StdlibQueueWay(Way):
    name = "stdlib-queue"
    label = "stdlib QueueHandler + multiprocessing.Queue + QueueListener"
    writer = "parent"

    def open(self) -> None:
        self.queue = self.context().Queue()
        self.sink = _file_sink(self.path)
        sinks: list[logging.Handler] = [self.sink]
        if self.latency is not None:
            sinks.append(self.latency.handler())
        self.listener = logging.handlers.QueueListener(self.queue, *sinks)
        self.listener.start()
        self.child_arg = self.queue

    def drain(self) -> float | None:
        self.listener.stop()
        self.sink.close()
        return None

    def close(self) -> None:
        listener = getattr(self, "listener", None)
        if listener is not None and listener._thread is not None:
            listener.stop()
        if hasattr(self, "sink"):
            self.sink.close()

    @staticmethod
    def child(arg: Any, index: int, spec: Spec) -> Emitter:
        emitter = _own_root(logging.handlers.QueueHandler(arg))

        def finish() -> None:
            # The feeder thread still holds records: they count until they are in the pipe.
            arg.close()
            arg.join_thread()

        return emitter._replace(finish=finish)


class StdlibManagerWay(Way):
    name = "stdlib-manager"
    label = "stdlib QueueHandler + Manager().Queue() + Pool"
    writer = "helper"

    def open(self) -> None:
        self.manager = self.context().Manager()
        self.queue = self.manager.Queue()
        self.sink = _file_sink(self.path)
        self.listener = logging.handlers.QueueListener(self.queue, self.sink)
        self.listener.start()
        self.child_arg = self.queue

    def launch(self, ready: Any, go: Any, results: Any) -> Workers:
        # The pattern people fall back to because Pool refuses a plain Queue.
        count = self.spec.processes
        pool = self.context().Pool(count, initializer=_pool_init, initargs=(ready, go, results))
        tasks = [
            pool.apply_async(_pool_task, (self.name, self.child_arg, i, self.spec))
            for i in range(count)
        ]
        return _PoolWorkers(pool, tasks)

    def helper_pids(self) -> list[int]:
        process = getattr(self.manager, "_process", None)
        return [process.pid] if process is not None and process.pid else []

    def drain(self) -> float | None:
        self.listener.stop()
        self.sink.close()
        return None

    def close(self) -> None:
        listener = getattr(self, "listener", None)
        if listener is not None and listener._thread is not None:
            listener.stop()
        if hasattr(self, "sink"):
            self.sink.close()
        if hasattr(self, "manager"):
            self.manager.shutdown()

    @staticmethod
    def child(arg: Any, index: int, spec: Spec) -> Emitter:
        return _own_root(logging.handlers.QueueHandler(arg))


class ConcurrentLogHandlerWay(Way):
    name = "concurrent-log-handler"
    label = "concurrent-log-handler (file lock around each write)"

    @classmethod
    def unavailable(cls, method: str) -> str | None:
        if importlib.util.find_spec("concurrent_log_handler") is None:
            return _EXTRA_HINT
        return None

    @staticmethod
    def child(arg: Any, index: int, spec: Spec) -> Emitter:
        handler_class = _peer("concurrent_log_handler").ConcurrentRotatingFileHandler
        path = os.path.join(spec.directory, "bench.log")
        return _own_root(handler_class(path, "a", encoding="utf-8"))


class LoguruWay(Way):
    name = "loguru-enqueue"
    label = "loguru, enqueue=True"
    writer = "parent"

    @classmethod
    def unavailable(cls, method: str) -> str | None:
        if importlib.util.find_spec("loguru") is None:
            return _EXTRA_HINT
        return None

    def open(self) -> None:
        logger = _peer("loguru").logger
        logger.remove()
        self.logger = logger
        self.handler_id: int | None = logger.add(
            self.path,
            format=_LOGURU_FORMAT,
            level="INFO",
            enqueue=True,
            context=self.context(),
        )
        self.child_arg = logger

    def drain(self) -> float | None:
        self._remove()
        return None

    def close(self) -> None:
        if hasattr(self, "logger"):
            self._remove()

    def _remove(self) -> None:
        handler_id, self.handler_id = self.handler_id, None
        if handler_id is not None:
            self.logger.remove(handler_id)

    @staticmethod
    def child(arg: Any, index: int, spec: Spec) -> Emitter:
        # Records go straight into loguru's SimpleQueue pipe: nothing to flush.
        return Emitter(arg.info, FMT_BRACES, _nothing)


class MultiprocessingLoggingWay(Way):
    name = "multiprocessing-logging"
    label = "multiprocessing-logging (queue + thread, fork only)"
    writer = "parent"

    @classmethod
    def unavailable(cls, method: str) -> str | None:
        if importlib.util.find_spec("multiprocessing_logging") is None:
            return _EXTRA_HINT
        if method != "fork":
            return "works only under fork"
        return None

    def open(self) -> None:
        handler_class = _peer("multiprocessing_logging").MultiProcessingHandler
        expected = self.spec.processes * self.spec.records
        self.sink = _CountingFileHandler(self.path, expected)
        self.sink.setFormatter(logging.Formatter(DEFAULT_FORMAT))
        # What install_mp_handler() does, without its check of the global start method.
        self.handler = handler_class("mp-handler-0", sub_handler=self.sink)
        root = logging.getLogger()
        self.saved = (root.handlers[:], root.level)
        for old in root.handlers[:]:
            root.removeHandler(old)
        root.addHandler(self.handler)
        root.setLevel(logging.INFO)

    def drain(self) -> float | None:
        self.close()
        return self.sink.done_at

    def close(self) -> None:
        handler = getattr(self, "handler", None)
        if handler is None:
            return
        self.handler = None
        root = logging.getLogger()
        root.removeHandler(handler)
        handlers, level = self.saved
        for old in handlers:
            root.addHandler(old)
        root.setLevel(level)
        handler.close()

    @staticmethod
    def child(arg: Any, index: int, spec: Spec) -> Emitter:
        # The fork child inherited the wrapping handler from the parent's root logger.
        handlers = logging.getLogger().handlers

        def finish() -> None:
            for handler in handlers:
                mp_queue = getattr(handler, "queue", None)
                if mp_queue is not None:
                    mp_queue.close()
                    mp_queue.join_thread()

        return Emitter(logging.getLogger(_LOGGER).info, FMT_PERCENT, finish)


class PerProcessFilesWay(Way):
    name = "per-process-files"
    label = "one file per process (no coordination)"

    @staticmethod
    def child(arg: Any, index: int, spec: Spec) -> Emitter:
        path = os.path.join(spec.directory, f"bench-{index}.log")
        return _own_root(logging.FileHandler(path, encoding="utf-8"))


class SingleProcessWay(Way):
    name = "single-process"
    label = "one process alone, logging.FileHandler"
    one_process = True

    @staticmethod
    def child(arg: Any, index: int, spec: Spec) -> Emitter:
        path = os.path.join(spec.directory, "bench.log")
        return _own_root(logging.FileHandler(path, encoding="utf-8"))


class NullHandlerWay(Way):
    name = "null-handler"
    label = "floor: one process, logging.NullHandler"
    one_process = True
    audited = False

    @staticmethod
    def child(arg: Any, index: int, spec: Spec) -> Emitter:
        return _own_root(logging.NullHandler())


class PlainWriteWay(Way):
    name = "plain-write"
    label = "one process, plain buffered file write of the same lines"
    one_process = True

    @staticmethod
    def child(arg: Any, index: int, spec: Spec) -> Emitter:
        sample = logging.LogRecord(_LOGGER, logging.INFO, __file__, 0, "", None, None)
        prefix = logging.Formatter(DEFAULT_FORMAT).format(sample)
        handle = open(  # noqa: SIM115 - closed by finish
            os.path.join(spec.directory, "bench.log"), "w", encoding="utf-8"
        )
        write = handle.write
        fmt = prefix.replace("%", "%%") + FMT_PERCENT + "\n"

        def emit(fmt: str, index: int, seq: int, pad: str) -> None:
            write(fmt % (index, seq, pad))

        return Emitter(emit, fmt, handle.close)


_ALL: Final[tuple[type[Way], ...]] = (
    LogfunnelWay,
    LogfunnelTcpWay,
    LogfunnelTlsWay,
    LogfunnelJsonWay,
    LockedFileWay,
    ProcessFilesWay,
    StdlibQueueWay,
    StdlibManagerWay,
    ConcurrentLogHandlerWay,
    LoguruWay,
    MultiprocessingLoggingWay,
    PerProcessFilesWay,
    SingleProcessWay,
    NullHandlerWay,
    PlainWriteWay,
)

#: Every way by name, for the CLI and for spawn children looking up their half.
WAYS: Final[dict[str, type[Way]]] = {way.name: way for way in _ALL}

#: The ways of the main comparison, in table order.
COMPARED: Final[tuple[str, ...]] = tuple(w.name for w in _ALL if w is not PlainWriteWay)
