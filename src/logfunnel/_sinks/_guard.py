"""Guards around the collector's sinks: failures counted and reported, slow sinks isolated.

The collector hands every record to every sink on one thread. Two kinds of
sink hurt that thread and, through it, every producer:

* a sink that fails on every call (a full disk, a closed socket). The stdlib
  prints a traceback to stderr for each failed record and counts nothing. A
  guard counts the failures, prints the first traceback once, and writes a
  summary record to the other sinks at most every ``REPORT_INTERVAL`` seconds.
  When no other sink takes the summary (there is none, its level is higher,
  or it fails too), the summary goes to stderr, as the stdlib's last resort
  does for a record no handler takes: a loss is never silent;
* a sink that blocks (a network handler whose peer stalls, a hung disk). Once
  one call has taken longer than ``SLOW_SINK`` seconds the guard moves that
  sink to its own thread behind a bounded queue, so the others keep their
  pace. When the queue is full the collector waits for room, which is ordinary
  backpressure, unless the funnel's overflow policy is ``"drop"``, or the sink
  has not finished a single record for ``STALL_TIMEOUT`` seconds. In those two
  cases the sink's records are dropped, counted and reported; the other sinks
  still get every record.

A guard installs itself on the sink instance (``handle`` and ``handleError``)
and removes itself when the collector stops. It does not wrap the sink, so
code that looks at the sink's type sees the user's handler unchanged. The fast
path for a healthy sink costs one extra Python call, one test of a global and
two clock reads per record.
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

__all__ = [
    "LINES_ATTR",
    "PER_LINE",
    "QUEUE_BYTES",
    "QUEUE_RECORDS",
    "REPORT_INTERVAL",
    "SLOW_SINK",
    "STALL_TIMEOUT",
    "SinkGuard",
    "SinkGuards",
]

#: One call longer than this (seconds) moves a sink to its own thread.
SLOW_SINK: Final = 1.0
#: What a batch of producer-formatted lines may take a line, on top of SLOW_SINK.
PER_LINE: Final = 200e-6
#: A sink isolated in its own thread that finishes no record for this long
#: (seconds) while its queue is full is declared stuck: its records are
#: dropped and counted until it finishes one again.
STALL_TIMEOUT: Final = 10.0
#: Bounds of an isolated sink's queue: records, and the approximate bytes of
#: their messages and tracebacks.
QUEUE_RECORDS: Final = 10_000
QUEUE_BYTES: Final = 64 * 1024 * 1024
#: Repeated failures of one sink are summarised at most this often (seconds).
REPORT_INTERVAL: Final = 10.0

_SKIP_ATTR: Final = "_logfunnel_not_for"
#: On the record a failed text batch reports: how many lines it held.
LINES_ATTR: Final = "_logfunnel_lines"
# The guards whose failure reports are being handed to the sinks right now, in
# this process. Only while there is one does a guard look for the report marker
# on the records it handles (to tell the reporting guard that a sink took it),
# so a healthy sink pays one test of this global per record, not a dict lookup.
# A list, not a counter under a lock: append and remove are atomic, and no lock
# can be inherited held by a fork child.
_reporting: list[SinkGuard] = []
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reporting.clear)
_JOB_FAILED: Final = logging.LogRecord(
    "logfunnel", logging.ERROR, __file__, 0, "a sink failed in its own thread", None, None
)


class _Stats(Protocol):
    sink_errors: int
    sink_dropped: int
    slow_sinks: int


Reporter = Callable[..., None]


#: What a rebuilt exception (traceback objects, no text yet) is counted as, in bytes.
_EXCEPTION_SIZE: Final = 8192


def _size(record: logging.LogRecord) -> int:
    """About how many bytes ``record`` holds, for the bound of an isolated sink's queue."""
    msg = record.msg
    size = len(msg) if isinstance(msg, str) else 64
    exc_text = record.exc_text
    if exc_text:
        size += len(exc_text)
    elif record.exc_info:
        size += _EXCEPTION_SIZE  # rebuilt objects, formatted only by the sink
    return size + 512


class SinkGuard:
    """The guard of one sink; see the module docstring for what it does and why."""

    def __init__(
        self,
        sink: logging.Handler,
        stats: _Stats,
        report: Reporter,
        *,
        overflow: str = "block",
        slow_after: float | None = None,
        stall_timeout: float | None = None,
        queue_records: int | None = None,
        queue_bytes: int | None = None,
        report_interval: float | None = None,
    ) -> None:
        # None: the module's constant, read now (so a test can change it).
        self.sink = sink
        self.failures = 0
        self.dropped = 0
        self.isolated = False
        self._stats = stats
        self._report_to_sinks = report
        self._overflow = overflow
        self._slow_after = SLOW_SINK if slow_after is None else slow_after
        self._stall_timeout = STALL_TIMEOUT if stall_timeout is None else stall_timeout
        self._queue_records = QUEUE_RECORDS if queue_records is None else queue_records
        self._queue_bytes = QUEUE_BYTES if queue_bytes is None else queue_bytes
        self._report_interval = REPORT_INTERVAL if report_interval is None else report_interval
        self._handle = sink.handle
        self._handle_error = sink.handleError
        self._had_own = {name: name in sink.__dict__ for name in ("handle", "handleError")}
        self._unreported = 0
        self._last_error: BaseException | None = None
        # Whether another sink took this guard's last failure report.
        self._delivered = False
        self._next_report = 0.0
        self._reporting = False
        # Work for an isolated sink, in order: a record to handle, or a batch of
        # producer-formatted lines to write (see _sinks.TextWriter).
        self._queue: collections.deque[tuple[Callable[[], object], int]] = collections.deque()
        self._queued_bytes = 0
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._closing = False
        self._stuck = False
        self._dropped_while_stuck = 0
        self._progress = time.monotonic()

    # -- installation --------------------------------------------------------

    def install(self) -> None:
        """Route the sink's ``handle`` and ``handleError`` through this guard."""
        sink: Any = self.sink
        sink.handle = self.handle
        sink.handleError = self.handle_error

    def uninstall(self) -> None:
        """Give the sink back its own ``handle`` and ``handleError``."""
        sink: Any = self.sink
        for name, original in (("handle", self._handle), ("handleError", self._handle_error)):
            if self._had_own[name]:
                setattr(sink, name, original)
            else:
                sink.__dict__.pop(name, None)

    # -- the record path -----------------------------------------------------

    def handle(self, record: logging.LogRecord) -> bool:
        """Hand ``record`` to the sink, or to its queue once it has been isolated."""
        if _reporting and _SKIP_ATTR in record.__dict__:
            return self._handle_report(record)
        return self._handle_record(record)

    def _handle_report(self, record: logging.LogRecord) -> bool:
        """Handle a guard's failure report; tell that guard when this sink took it."""
        reporter = record.__dict__[_SKIP_ATTR]
        if reporter is self:
            return False  # our own failure report is not for the failing sink
        failures = self.failures
        handled = self._handle_record(record)
        # handle() returns true even when emit failed: its handleError counted that.
        if handled and self.failures == failures and isinstance(reporter, SinkGuard):
            reporter._delivered = True
        return handled

    def _handle_record(self, record: logging.LogRecord) -> bool:
        if self.isolated:
            self._enqueue(functools.partial(self._handle, record), _size(record))
            return True
        started = time.perf_counter()
        try:
            return bool(self._handle(record))
        finally:
            self._after_call(started)

    def submit(self, job: Callable[[], object], size: int, lines: int = 1) -> None:
        """Run ``job`` (a batch of ``lines`` lines for the sink) as a record would run:
        timed, and queued behind the sink's other work once the sink has been isolated.

        A batch is allowed ``PER_LINE`` seconds a line on top of ``SLOW_SINK``: a
        healthy sink's cost grows with what it writes (a size-rotating file renames
        its backups at every rollover), a blocked one does not finish at all.
        """
        if self.isolated:
            self._enqueue(job, size)
            return
        started = time.perf_counter()
        try:
            job()
        finally:
            self._after_call(started, lines * PER_LINE)

    def _after_call(self, started: float, allowance: float = 0.0) -> None:
        elapsed = time.perf_counter() - started
        if elapsed > self._slow_after + allowance:
            self._isolate(elapsed)
        if self._unreported and not self._reporting:
            self._maybe_report()

    def handle_error(self, record: logging.LogRecord) -> None:
        """Count a failure of the sink; the report comes later, rate-limited."""
        # A failed batch of producer-formatted lines counts once per line.
        count = int(record.__dict__.get(LINES_ATTR, 1))
        first = not self.failures
        self.failures += count
        self._unreported += count
        self._stats.sink_errors += count
        error = sys.exc_info()[1]
        # The first failure, whatever it counts: a failed batch counts one per line.
        if first and logging.raiseExceptions and sys.stderr is not None:
            # One traceback for the first failure, where the stdlib prints one per record.
            try:
                sys.stderr.write(
                    f"--- logfunnel: sink {self.sink!r} failed; later failures are counted ---\n"
                )
                traceback.print_exc(file=sys.stderr)
            except Exception:
                pass
        if error is not None:
            self._last_error = error

    def _maybe_report(self, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now < self._next_report:
            return
        count, self._unreported = self._unreported, 0
        if not count:
            return
        self._next_report = now + self._report_interval
        self._reporting = True
        try:
            error = self._last_error
            self._report_failure(
                logging.ERROR,
                "logfunnel: sink %s failed %d time(s) (%d in all); last error: %s",
                _ascii(repr(self.sink)),
                count,
                self.failures,
                "unknown" if error is None else _ascii(f"{type(error).__name__}: {error}"),
            )
        finally:
            self._reporting = False

    def _report_failure(self, level: int, msg: str, *args: object) -> None:
        """Report a loss of this sink to the other sinks, or to stderr if none takes it.

        The arguments should be ASCII: the sink that failed may be one that
        cannot encode anything else, and so may the others.
        """
        self._delivered = False
        _reporting.append(self)
        try:
            self._report_to_sinks(level, msg, *args, skip=self)
        finally:
            _reporting.remove(self)
        if not self._delivered and sys.stderr is not None:
            try:
                sys.stderr.write(msg % args + "\n")
                sys.stderr.flush()
            except Exception:
                pass

    # -- isolation -----------------------------------------------------------

    def _isolate(self, elapsed: float) -> None:
        if self.isolated:
            return
        self.isolated = True
        self._stats.slow_sinks += 1
        self._progress = time.monotonic()
        self._thread = threading.Thread(
            target=self._serve, name=f"logfunnel-sink-{type(self.sink).__name__}", daemon=True
        )
        self._thread.start()
        self._report_to_sinks(
            logging.WARNING,
            "logfunnel: sink %r took %.2f s for one call; it now runs in its own thread "
            "behind a queue of %d records",
            self.sink,
            elapsed,
            self._queue_records,
        )

    def _enqueue(self, job: Callable[[], object], size: int) -> None:
        cond = self._cond
        with cond:
            while (
                len(self._queue) >= self._queue_records
                or self._queued_bytes + size > self._queue_bytes
            ) and self._queue:
                if self._overflow == "drop" or self._stuck:
                    self._drop_locked()
                    return
                waited = time.monotonic() - self._progress
                if waited >= self._stall_timeout:
                    self._stuck = True
                    self._drop_locked()
                    cond.release()
                    try:
                        self._report_failure(
                            logging.ERROR,
                            "logfunnel: sink %s finished no record for %.0f s; its records "
                            "are dropped and counted until it finishes one",
                            _ascii(repr(self.sink)),
                            waited,
                        )
                    finally:
                        cond.acquire()
                    return
                cond.wait(self._stall_timeout - waited)
            self._queue.append((job, size))
            self._queued_bytes += size
            cond.notify_all()

    def _drop_locked(self) -> None:
        self.dropped += 1
        self._dropped_while_stuck += 1
        self._stats.sink_dropped += 1

    def _serve(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._queue and not self._closing:
                    cond.wait()
                if not self._queue:
                    return
                job, size = self._queue[0]
            try:
                job()
            except Exception:  # a filter raised: handle() has no guard for that
                self.handle_error(_JOB_FAILED)
            recovered = 0
            with cond:
                if not self._queue:
                    return  # given up on at stop: the queue was dropped
                self._queue.popleft()
                self._queued_bytes -= size
                self._progress = time.monotonic()
                if self._stuck:
                    self._stuck = False
                    recovered, self._dropped_while_stuck = self._dropped_while_stuck, 0
                cond.notify_all()
            if recovered:
                self._report_to_sinks(
                    logging.WARNING,
                    "logfunnel: sink %r is moving again; %d record(s) were dropped for it",
                    self.sink,
                    recovered,
                )
            if self._unreported:
                self._maybe_report()

    def close(self, timeout: float | None = None) -> None:
        """Drain, give the final report and uninstall (for one guard on its own)."""
        self.drain(timeout)
        self.final_report()
        self.uninstall()

    def final_report(self) -> None:
        """Report failures not reported yet."""
        if self._unreported:
            self._maybe_report(final=True)

    def drain(self, timeout: float | None = None) -> None:
        """Let an isolated sink finish its queue, or give up on a stuck one."""
        thread = self._thread
        if thread is not None:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            started = time.monotonic()
            deadline = None if timeout is None else started + timeout
            while thread.is_alive():
                with self._cond:
                    # A sink stuck before the stop gets a full stall timeout from now.
                    idle = time.monotonic() - max(self._progress, started)
                    left = len(self._queue)
                if idle >= self._stall_timeout or (
                    deadline is not None and time.monotonic() >= deadline
                ):
                    with self._cond:
                        self.dropped += left
                        self._stats.sink_dropped += left
                        self._queue.clear()
                    self._report_failure(
                        logging.ERROR,
                        "logfunnel: sink %s did not finish its queue at stop; "
                        "%d record(s) were dropped for it",
                        _ascii(repr(self.sink)),
                        left,
                    )
                    break
                thread.join(min(0.5, self._stall_timeout))


class SinkGuards:
    """The guards of every sink of one collector."""

    def __init__(
        self,
        sinks: Sequence[logging.Handler],
        stats: _Stats,
        report: Reporter,
        **options: Any,
    ) -> None:
        self.guards = [SinkGuard(sink, stats, report, **options) for sink in sinks]
        for guard in self.guards:
            guard.install()

    def guard_of(self, sink: logging.Handler) -> SinkGuard:
        """The guard installed on ``sink``."""
        for guard in self.guards:
            if guard.sink is sink:
                return guard
        raise KeyError(sink)

    def close(self, timeout: float | None = None) -> None:
        """Drain isolated sinks, give the final failure reports and uninstall every guard.

        Each step is done for all sinks before the next, so a failing sink's
        last report still finds every other sink guarded.
        """
        for guard in self.guards:
            guard.drain(timeout)
        for guard in self.guards:
            guard.final_report()
        for guard in self.guards:
            guard.uninstall()

    def forget(self) -> None:
        """In a fork child: uninstall without waiting (the sink threads stayed in the parent)."""
        for guard in self.guards:
            guard.uninstall()


def _ascii(text: str) -> str:
    """``text`` with anything beyond ASCII escaped, so that any sink can write it."""
    return text.encode("ascii", "backslashreplace").decode("ascii")


def skip_marker(record: logging.LogRecord, guard: object) -> None:
    """Mark ``record`` as not for ``guard``'s sink (a report about that sink's failures)."""
    record.__dict__[_SKIP_ATTR] = guard
