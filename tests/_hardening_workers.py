"""Functions run in child processes by the hardening tests (faults, backpressure, scale).

Spawn and forkserver children import this module by name, so everything a
child runs lives here rather than in the test files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

import logfunnel
from logfunnel._protocol._codec import KIND_HELLO, PROTOCOL_VERSION, encode_json

log = logging.getLogger("worker")


def rss_kib(pid: int | str = "self") -> int:
    """Resident set size of a process, from /proc/<pid>/status (KiB)."""
    return _status_field(pid, "VmRSS")


def trim_heap() -> None:
    """Give the C heap's free memory back to the system (glibc ``malloc_trim``), so that
    memory an earlier test freed, but the allocator kept, cannot hide the growth to come."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is not None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).malloc_trim(0)


def peak_rss_kib(pid: int | str = "self") -> int:
    """Peak resident set size of a process, from /proc/<pid>/status (KiB)."""
    return _status_field(pid, "VmHWM")


def _status_field(pid: int | str, name: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise LookupError(name)


def fd_count(pid: int | str = "self") -> int:
    """How many file descriptors a process has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def numbered(index: int, count: int) -> None:
    """``count`` records ``p<index> n<number>``, as fast as possible."""
    for number in range(count):
        log.info("p%d n%d", index, number)


# -- producer death -----------------------------------------------------------------


def kill_self_after_cut(cut: int) -> None:
    """Log one whole record, write the first ``cut`` bytes of the next frame, SIGKILL ourselves.

    ``cut`` < 0 counts from the end of the frame.
    """
    handler = logfunnel.attached()
    assert handler is not None
    log.info("before the torn frame")
    frame = handler.prepare(
        logging.LogRecord("worker", logging.INFO, __file__, 1, "torn", None, None)
    )
    sock = handler._sock
    assert sock is not None
    sock.sendall(frame[:cut])
    os.kill(os.getpid(), signal.SIGKILL)


def kill_self_inside_hello(address: str, cut: int) -> None:
    """Connect by hand, send the first ``cut`` bytes of a hello, SIGKILL ourselves."""
    path = address[len("unix:") :]
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)
    hello = encode_json(
        KIND_HELLO, {"v": PROTOCOL_VERSION, "host": "h", "pid": os.getpid(), "start": 1.0}
    )
    sock.sendall(hello[:cut])
    os.kill(os.getpid(), signal.SIGKILL)


def big_records_until_killed(logged: Any, threshold: int) -> None:
    """Log numbered 200 KiB records forever; set ``logged`` once ``threshold`` calls returned."""
    filler = "b" * (200 * 1024)
    number = 0
    while True:
        log.info("big n%d %s", number, filler)
        number += 1
        if number == threshold:
            logged.set()


# -- fork while another thread is inside a logging call -----------------------------


class _PausingSocket:
    """Wraps a handler's socket: sends half of one record's bytes, then waits for the fork."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inside = threading.Event()
        self.forked = threading.Event()
        self.armed = False

    def sendall(self, data: bytes) -> None:
        if not self.armed:
            self.sock.sendall(data)
            return
        self.armed = False
        half = len(data) // 2
        self.sock.sendall(data[:half])
        self.inside.set()
        self.forked.wait(60)
        self.sock.sendall(data[half:])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def fork_while_logging(rounds: int) -> None:
    """Fork ``rounds`` times while another thread is stopped half-way through a frame.

    Each time, a thread of this process is inside a logging call: it holds the
    handler's lock and has written half a frame to this process's connection.
    The fork child logs one record and leaves. It must neither deadlock on
    the inherited lock nor write into the parent's half-written stream.
    """
    handler = logfunnel.attached()
    assert handler is not None
    assert handler._sock is not None
    pausing = _PausingSocket(handler._sock)
    handler._sock = pausing  # type: ignore[assignment]
    for number in range(rounds):
        pausing.inside.clear()
        pausing.forked.clear()
        pausing.armed = True
        thread = threading.Thread(target=log.info, args=("parent thread n%d", number))
        thread.start()
        assert pausing.inside.wait(60), "the logging thread never got inside its call"
        read_fd, write_fd = os.pipe()
        with _quiet_fork_warning():
            pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            log.info("fork child n%d", number)
            os.write(write_fd, b"k")
            os._exit(0)
        os.close(write_fd)
        done = _child_answer(read_fd, pid)
        _, status = os.waitpid(pid, 0)
        pausing.forked.set()
        thread.join(60)
        assert done == b"k", f"fork child {number} did not log"
        assert status == 0, f"fork child {number} failed ({status})"


def fork_while_attaching(silent_port: int) -> None:
    """Fork while another thread is inside attach() (holding its lock); the child attaches."""
    address = logfunnel.attached()
    assert address is not None
    real = address.address
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", silent_port))
        silent.listen()
        stuck = threading.Thread(
            target=_attach_quietly, args=(f"tcp://127.0.0.1:{silent_port}?key=00",), daemon=True
        )
        stuck.start()
        silent.accept()  # the thread is now connected, waiting inside attach()
        read_fd, write_fd = os.pipe()
        with _quiet_fork_warning():
            pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            logfunnel.detach()
            logfunnel.attach(real)
            log.info("fork child attached while its parent was attaching")
            os.write(write_fd, b"k")
            os._exit(0)
        os.close(write_fd)
        done = _child_answer(read_fd, pid)
        os.waitpid(pid, 0)
        assert done == b"k", "the fork child did not attach (deadlocked?)"


def _child_answer(read_fd: int, pid: int, timeout: float = 30) -> bytes:
    """The fork child's one-byte answer; a child that gives none in time is killed."""
    import select

    try:
        ready, _, _ = select.select([read_fd], [], [], timeout)
        if ready:
            return os.read(read_fd, 1)  # b"" if the child died without logging
        os.kill(pid, signal.SIGKILL)  # deadlocked: fail the test, do not hang it
        return b""
    finally:
        os.close(read_fd)


def _attach_quietly(address: str) -> None:
    with contextlib.suppress(logfunnel.AttachError):
        logfunnel.attach(address, timeout=30)


@contextlib.contextmanager
def _quiet_fork_warning() -> Any:
    import warnings

    with warnings.catch_warnings():
        # 3.12+ warns that forking a threaded process may deadlock: that is the test.
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


# -- collector gone ------------------------------------------------------------------


def log_after_collector_stops(stderr_path: str, stopped: Any, count: int, go: Any) -> None:
    """Log one record, wait until the funnel stopped, log ``count`` more; stderr to a file."""
    _stderr_to(stderr_path)
    log.info("before the stop")
    go.set()
    assert stopped.wait(60)
    for number in range(count):
        log.info("after the stop n%d", number)
    logging.shutdown()  # what interpreter exit does; the handler reports its count here


def log_through_stop(stderr_path: str, started: Any, enough: Any, quit_event: Any) -> None:
    """Log numbered records without pause while the funnel stops; stderr to a file."""
    _stderr_to(stderr_path)
    number = 0
    while not quit_event.is_set():
        log.info("through n%d", number)
        number += 1
        if number == 2000:
            started.set()
    with open(stderr_path + ".count", "w") as out:
        out.write(str(number))
    logging.shutdown()


def _stderr_to(path: str) -> None:
    stream = open(path, "w", buffering=1)  # noqa: SIM115 - lives as long as the process
    os.dup2(stream.fileno(), 2)
    sys.stderr = stream


# -- parent crash --------------------------------------------------------------------


def parent_with_process_collector(
    path: str, method: str, producers: int, count: int, report: Any, ready: Any
) -> None:
    """A program with a process collector: start producers, report, then wait to be killed."""
    funnel = logfunnel.Funnel(path, collector="process", level="INFO").start()
    assert isinstance(funnel._collector, logfunnel._collector._process.ProcessCollector)
    ctx = funnel.context(method)
    logged = [ctx.Event() for _ in range(producers)]
    procs = [
        ctx.Process(target=_log_then_linger, args=(i, count, logged[i], os.getpid()))
        for i in range(producers)
    ]
    for proc in procs:
        proc.start()
    for event in logged:
        assert event.wait(60)
    log.info("parent: every producer has logged")
    report.put(
        {
            "collector": funnel._collector.pid,
            "producers": [p.pid for p in procs],
            "address": funnel.address,
        }
    )
    ready.wait(120)  # the test SIGKILLs us here
    os._exit(5)


def _log_then_linger(index: int, count: int, logged: Any, parent_pid: int) -> None:
    import select

    parent = os.pidfd_open(parent_pid)  # not getppid(): under forkserver that is the server
    numbered(index, count)
    logged.set()
    # Log more once the parent is dead (its pidfd turns readable): the
    # collector must still be serving. No multiprocessing primitive is used
    # after the kill, since those may die with the process that made them.
    ready, _, _ = select.select([parent], [], [], 60)
    assert ready, "the parent was not killed"
    # Half a second of further work (not synchronisation): by then a collector
    # that stopped with its parent would be gone.
    threading.Event().wait(0.5)
    for number in range(count, count + 100):
        log.info("p%d n%d", index, number)


def attach_and_wait(address: str, stderr_path: str, attached: Any, go: Any, count: int) -> None:
    """Attach, say so, wait, then log ``count`` records (stderr to a file)."""
    _stderr_to(stderr_path)
    logfunnel.attach(address)
    log.info("attached")
    attached.set()
    assert go.wait(60)
    numbered(0, count)
    logging.shutdown()


# -- backpressure --------------------------------------------------------------------


def flood(
    index: int, count: int, payload: int, ready: Any, go: Any, handled: Any, results: Any
) -> None:
    """Once attached and told to go, log ``count`` records of ``payload`` bytes as fast as
    possible; report how many records the sink had handled when the last call returned,
    this process's memory, and its socket's send buffer."""
    handler = logfunnel.attached()
    assert handler is not None
    assert handler._sock is not None
    sndbuf = handler._sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    filler = "x" * payload
    ready.release()
    assert go.wait(60)
    before = rss_kib()
    started = time.perf_counter()
    for number in range(count):
        log.info("p%d n%d %s", index, number, filler)
    elapsed = time.perf_counter() - started
    results.put(
        {
            "index": index,
            "elapsed": elapsed,
            "handled_when_done": handled.value,
            "rss_before": before,
            "rss_peak": peak_rss_kib(),
            "sndbuf": sndbuf,
        }
    )


def flood_without_blocking(count: int, ready: Any, go: Any, done: Any) -> None:
    """Once attached and told to go, log ``count`` 1 KiB records; report how many were dropped."""
    handler = logfunnel.attached()
    assert handler is not None
    ready.release()
    assert go.wait(60)
    payload = "d" * 1024
    for number in range(count):
        log.info("drop n%d %s", number, payload)
    done.put(handler.dropped)


# -- scale ---------------------------------------------------------------------------


def short_lived(index: int, count: int) -> None:
    """A process that logs a few records and is gone."""
    numbered(index, count)
