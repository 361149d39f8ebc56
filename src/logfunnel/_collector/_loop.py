"""The collector: the one reader of every producer's frames and the one writer of the sinks.

It runs as a single thread around a selector. Every socket is non-blocking,
and each connection is a small state machine (authenticate, hello, records),
so a slow or hostile peer can never stall the others. A malformed frame
closes its own connection with a record saying why. Everything that
already reached the kernel when ``stop`` is called is read, decoded and
written before ``stop`` returns.

Line mode is the fast path for the common set-up, where every sink is a
text sink of one format and one level (a log file, perhaps with a console).
Producers then send each one-line record as its finished line and nothing
else, and the collector copies the run of whole lines it read, up to the
last newline, straight to the sinks, counting records with one
``bytes.count``. A record that would not be one line (a traceback, a NUL)
comes as an ordinary frame behind a NUL byte, which no text line contains;
so does a record of a route logger (see ``_sinks._plan``), with its
structured record, which goes the record's way through the routes.
Sequence numbers still hold: every line counts as one, frames carry theirs,
and a reconnecting producer says where it is, so a gap is still seen. Any
other set-up gets frames only.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import secrets
import selectors
import socket
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from .._protocol._acks import ack_frame, bye_frame
from .._protocol._address import Address
from .._protocol._codec import (
    KIND_HELLO,
    KIND_RECORD,
    KIND_TEXT,
    MAX_FRAME,
    FrameError,
    decode_record,
    decode_text,
    make_record,
)
from .._protocol._handshake import (
    NO_CHALLENGE,
    AckChannel,
    VersionRefused,
    challenge_frame,
    check_auth,
    config_frame,
    parse_hello,
    refusal_frame,
)
from .._protocol._stream import line_run, one_text, read_frame
from .._sinks._config import OVERFLOW_POLICIES
from .._sinks._guard import skip_marker
from .._sinks._plan import SinkPlan
from .._sinks._routes import Routes
from .._threads import collector_threads
from ._budget import BUFFER_BUDGET, UNRESERVED, BufferBudget
from ._sequence import Sequences, Stream

if TYPE_CHECKING:
    import ssl

__all__ = ["Collector", "CollectorStats"]

# One read takes at most this much; a line run or an unreserved frame fits.
_RECV_SIZE: Final = UNRESERVED
_CONTROL_LIMIT: Final = 1 << 16
# How long a TCP drain waits for bytes still in flight on loopback once the
# readable ones are read; Unix sockets need no wait (a returned send is readable).
_TCP_SETTLE: Final = 0.05
# A TCP drain stops waiting for more bytes in flight after this long (seconds).
_TCP_DRAIN_LIMIT: Final = 1.0
#: A peer that has not finished its handshake this long after connecting is closed.
HANDSHAKE_TIMEOUT: Final = 10.0
#: A peer that stops in the middle of a frame for this long is closed.
STALL_TIMEOUT: Final = 60.0
# How often (seconds) timeouts are checked and a paused listener is retried.
_TICK: Final = 0.5
#: Acknowledgements a producer has not read yet, past which it is closed.
_ACK_BACKLOG: Final = 64 * 1024
# After a round of reads that brought at least _BUSY_ROUND records, the
# collector pauses _BATCH_WINDOW seconds before the next select: producers keep
# sending into their socket buffers meanwhile (they are not slowed), and the
# next round reads, and writes, several times more per system call and wake-up.
# A quiet collector never pauses, so records at a modest rate keep their latency.
_BUSY_ROUND: Final = 16
_BATCH_WINDOW: Final = 0.001
_ACCEPT_ERRORS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

_AUTH: Final = 0
_HELLO: Final = 1
_STREAM: Final = 2
# A producer's acknowledgement channel: the collector writes, the producer never does.
_ACKS: Final = 3
# A TLS connection whose TLS handshake is not done yet.
_TLS: Final = 4
# What _read_tls returns for a handshake step that left nothing to read.
_NOTHING: Final = -1
_STEPPED: Final = -2
# What a TLS peer's first bytes look like: a handshake record of TLS 1.0 to 1.3.
# As a frame header they would say more than _CONTROL_LIMIT bytes, so no valid
# handshake frame begins so.
_TLS_RECORDS: Final = (b"\x16\x03\x01", b"\x16\x03\x02", b"\x16\x03\x03", b"\x16\x03\x04")

_LISTENER: Final = object()
_WAKE: Final = object()

_new_record = logging.LogRecord.__new__
_LogRecord = logging.LogRecord

_live_collectors: weakref.WeakSet[Collector] = weakref.WeakSet()


@dataclass
class CollectorStats:
    """What the collector saw; a summary for people and tests."""

    records: int = 0
    connections: int = 0
    bad_connections: int = 0
    partial_frames: int = 0
    gaps: int = 0
    missing_records: int = 0
    sink_errors: int = 0
    producers: set[tuple[str, int, float]] = field(default_factory=set)
    #: Peers closed for not finishing a handshake or a frame in time.
    timeouts: int = 0
    #: Records a slow, stuck or full sink did not get (the other sinks did).
    sink_dropped: int = 0
    #: Sinks moved to their own thread because one call took too long.
    slow_sinks: int = 0
    #: Unexpected errors while serving a connection (that connection was closed).
    internal_errors: int = 0


class _Connection:
    __slots__ = (
        "acked",
        "acking",
        "buf",
        "expected",
        "identity",
        "label",
        "lines",
        "nonce",
        "out",
        "partner",
        "paused",
        "reserved",
        "since",
        "sock",
        "state",
        "stream",
        "tls",
    )

    def __init__(self, sock: socket.socket, state: int, label: str) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.state = state
        self.identity: tuple[str, int, float] | None = None
        # The producer's identity and which of its handlers: its sequence's key.
        self.stream: tuple[str, int, float, int] | None = None
        self.expected = 0
        self.nonce = b""
        self.label = label
        # Whether its producer sends in line mode (its handshake answer said so).
        self.lines = False
        # When the handshake started, or when the last bytes came in.
        self.since = time.monotonic()
        # Bytes of the collector-wide budget held for a large frame being received.
        self.reserved = 0
        # True while waiting for budget: not read until some is given back.
        self.paused = False
        # Over TCP, a producer that keeps what it sends until acknowledged:
        # records below ``acked`` were acknowledged; ``out`` is what is still
        # to go to it (acknowledgements, whole frames).
        self.acking = False
        self.acked = 0
        self.out = bytearray()
        # A records connection's acknowledgement channel, and the reverse.
        self.partner: _Connection | None = None
        # A TLS connection (an ssl.SSLSocket).
        self.tls = False


class Collector:
    """Reads frames from every producer and hands the records to the sinks."""

    def __init__(
        self,
        listener: socket.socket,
        address: Address,
        sinks: Sequence[logging.Handler],
        level: int,
        *,
        max_frame: int = MAX_FRAME,
        on_record: Callable[[logging.LogRecord], None] | None = None,
        overflow: str = "block",
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        stall_timeout: float = STALL_TIMEOUT,
        buffer_budget: int = BUFFER_BUDGET,
        sink_options: dict[str, float] | None = None,
        routes: Routes | None = None,
        loggers: dict[str, Any] | None = None,
        final: bool = True,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._listener = listener
        # A tls:// listener's context: every accepted socket is made TLS.
        self._tls = tls
        # What a non-blocking send or read that would wait raises (TLS has its own).
        self._would_block: tuple[type[BaseException], ...] = (BlockingIOError, InterruptedError)
        self._ssl: Any = None
        if tls is not None:
            import ssl

            self._ssl = ssl
            self._would_block += (ssl.SSLWantReadError, ssl.SSLWantWriteError)
        # Whether producers are told, at the stop, not to wait for a successor
        # (a funnel's collector), or keep their records for the next one to
        # take the address (``logfunnel serve``).
        self._final = final
        self._address = address
        self._level = level
        #: The parent's logger configuration, for every producer's handshake.
        self._loggers = loggers
        self._max_frame = max_frame
        self.stats = CollectorStats()
        self._selector = selectors.DefaultSelector()
        self._recv_view = memoryview(bytearray(_RECV_SIZE))
        self._wake_r, self._wake_w = socket.socketpair()
        self._connections: dict[int, _Connection] = {}
        self._sequences = Sequences(self.stats, self._report)
        # Acknowledging connections: by stream, and those with records to acknowledge.
        self._streams: dict[Stream, _Connection] = {}
        self._to_ack: set[_Connection] = set()
        # Each acknowledging connection's token, for its channel's hello.
        self._channels: dict[str, _Connection] = {}
        self._stopping = threading.Event()
        # Records other threads gave ``note``, for the loop to hand to the sinks.
        self._notes: collections.deque[tuple[int, str, tuple[object, ...]]] = collections.deque()
        self._thread: threading.Thread | None = None
        self._owner_pid = os.getpid()
        self._closed = False
        self._lock = threading.Lock()
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow must be 'block' or 'drop', not {overflow!r}")
        self._overflow = overflow
        self._handshake_timeout = handshake_timeout
        self._stall_timeout = stall_timeout
        self._budget = BufferBudget(max(buffer_budget, max_frame))
        self._idle = threading.Condition(threading.Lock())
        self._listener_paused_until = 0.0
        self._next_tick = 0.0
        self.plan = SinkPlan(
            sinks,
            self.stats,
            self._report,
            routes=routes,
            on_record=on_record,
            overflow=overflow,
            sink_options=sink_options,
        )
        # The same answer for every producer's hello (over TCP, plus where it resumes);
        # with routes in line mode, another for producers that cannot send routed lines.
        common = {"level": level, "max_frame": max_frame, "overflow": overflow, "loggers": loggers}
        self._config: dict[str, Any] = {**common, **self.plan.handshake()}
        self._config_frame = config_frame(self._config)
        self._old_config: dict[str, Any] = {**common, **self.plan.handshake(routed_lines=False)}
        self._old_config_frame = config_frame(self._old_config)
        # The hot paths read these often: plain attributes, looked up once here.
        self._line_level = self.plan.line_level
        self._one_text = self.plan.one_text
        listener.setblocking(False)
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(listener, selectors.EVENT_READ, _LISTENER)
        self._selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        _live_collectors.add(self)

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Start the collector thread; a second call is an error."""
        if self._thread is not None:
            raise RuntimeError("this collector was already started")
        self._thread = threading.Thread(target=self._run, name="logfunnel-collector", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Drain what producers already sent, then close every socket.

        Returns False if the thread did not finish within ``timeout``.
        Safe to call twice, and a no-op in a process that does not own the
        collector (a fork child).
        """
        if os.getpid() != self._owner_pid:
            return True
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                return False
        elif thread is None:
            self._drain()
        self._close_all()
        self.plan.guards.close(timeout)
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def connection_count(self) -> int:
        """How many peers are connected right now (any thread may ask)."""
        return len(self._connections)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no peer is connected; False if some still are after ``timeout``."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._connections, timeout)

    def wait_busy(self, timeout: float | None = None) -> bool:
        """Wait until some peer is connected; False if none is after ``timeout``."""
        with self._idle:
            return self._idle.wait_for(lambda: bool(self._connections), timeout)

    def _forget_after_fork(self) -> None:
        """In a fork child: close our copies of every socket, never touch the peers."""
        self._closed = True
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        for conn in self._connections.values():
            conn.sock.close()
        self._connections.clear()
        with contextlib.suppress(Exception):
            self._selector.close()
        self.plan.guards.forget()

    # -- the loop ----------------------------------------------------------

    def _run(self) -> None:
        collector_threads[threading.get_ident()] = self
        select = self._selector.select
        stats = self.stats
        sleep = time.sleep
        try:
            while not self._stopping.is_set():
                before = stats.records
                for key, _ in select(_TICK if self._connections or self._budget.waiting else None):
                    self._dispatch_event(key.data, key.fileobj)
                if self._notes:
                    self._take_notes()
                self.plan.flush()
                if self._to_ack:
                    self._acknowledge()
                if time.monotonic() >= self._next_tick:
                    self._tick()
                if stats.records - before >= _BUSY_ROUND:
                    sleep(_BATCH_WINDOW)
            self._drain()
            self.plan.flush()
        except BaseException as exc:  # the collector must say why it died
            self._report(logging.CRITICAL, "logfunnel collector stopped by %r", exc)
            # Producers must not block on sockets nobody reads: closing them
            # sends their next records to the fallback.
            self._close_all()
            raise
        finally:
            collector_threads.pop(threading.get_ident(), None)

    def _tick(self) -> None:
        """Close peers that stalled in a handshake or a frame; retry a paused listener."""
        now = time.monotonic()
        self._next_tick = now + _TICK
        if self._listener_paused_until and now >= self._listener_paused_until:
            self._listener_paused_until = 0.0
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.register(self._listener, selectors.EVENT_READ, _LISTENER)
        for conn in list(self._connections.values()):
            if conn.state == _ACKS:
                continue
            if conn.state == _TLS:
                limit = self._handshake_timeout
                what = "no TLS handshake (a plaintext tcp:// producer says nothing first)"
            elif conn.state != _STREAM:
                limit, what = self._handshake_timeout, "no handshake"
            elif conn.buf and not conn.paused:
                unit = "line" if self._in_line(conn) else "frame"
                limit, what = self._stall_timeout, f"stopped inside a {unit}"
            else:
                continue
            if now - conn.since < limit:
                continue
            fd = conn.sock.fileno()
            # Bytes may be waiting unread because a sink held this thread: read
            # them first, so only a peer that really went quiet is closed.
            progressed = self._read(fd)
            if fd not in self._connections:
                continue
            if conn.state == _STREAM and (progressed or not conn.buf):
                continue
            self.stats.timeouts += 1
            self._close(conn, f"{what} for {limit:g} s ({len(conn.buf)} bytes pending)")

    def _dispatch_event(self, data: object, fileobj: object) -> None:
        if data is _LISTENER:
            self._accept_pending()
        elif data is _WAKE:
            with contextlib.suppress(OSError):
                self._wake_r.recv(4096)
        else:
            assert isinstance(fileobj, socket.socket)
            try:
                self._read(fileobj.fileno())
            except Exception as exc:  # a bug must cost one connection, not the collector
                conn = self._connections.get(fileobj.fileno())
                self.stats.internal_errors += 1
                if conn is not None:
                    self._close(conn, f"internal error: {exc!r}")

    def _drain(self) -> None:
        """Read what was sent before stop, refuse the rest, and end every connection.

        Connections already queued on the listener are taken, then the listener
        is closed, so a late producer gets a refused connection (and uses its
        fallback) instead of a silent loss. Each connection is then shut for
        reading: what is in its socket buffer is still read, but the
        producer's next send fails at once and goes to its fallback. So the
        drain is finite even while producers keep logging, and nothing falls
        between the last read and the close. Over TCP a shutdown for reading
        does not reach the peer, so the collector first ends its own side
        (a FIN, which a TCP producer checks for before each send, see the
        handler), then reads until each producer has closed or stayed quiet
        for a moment.
        """
        self._take_notes()
        self._accept_pending()
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(self._listener)
        self._listener.close()
        # The socket's own shutdown: an SSLSocket's would drop its TLS state, and
        # the bytes still to read would come out encrypted.
        shutdown = socket.socket.shutdown
        if self._address.scheme != "unix":
            # What is written so far is acknowledged; a final collector then
            # says bye, so its producers send what comes later to their fallback.
            self.plan.flush()
            for conn in list(self._connections.values()):
                if conn.acking:
                    self._send_to(conn, ack_frame(conn.expected))
                    if self._final:
                        self._send_to(conn, bye_frame())
            for conn in list(self._connections.values()):
                if conn.state == _ACKS:
                    continue  # the last acknowledgement goes there when its records end
                with contextlib.suppress(OSError):
                    shutdown(conn.sock, socket.SHUT_WR)
            deadline = time.monotonic() + _TCP_DRAIN_LIMIT
            while time.monotonic() < deadline:
                progressed = False
                for fd in list(self._connections):
                    progressed |= self._read_available(fd)
                if progressed:
                    continue
                ready = self._selector.select(_TCP_SETTLE) if self._connections else []
                if not any(key.data not in (_LISTENER, _WAKE) for key, _ in ready):
                    break
        for conn in list(self._connections.values()):
            with contextlib.suppress(OSError):
                shutdown(conn.sock, socket.SHUT_RD)
        while self._connections:
            progressed = False
            for fd in list(self._connections):
                progressed |= self._read_available(fd)
            if not progressed:
                # Only connections waiting for budget that cannot progress are left.
                for conn in list(self._connections.values()):
                    self._close(conn, "closed at stop while waiting for buffer budget")

    def _read_available(self, fd: int) -> bool:
        progressed = False
        while fd in self._connections:
            if not self._read(fd):
                break
            progressed = True
        return progressed or fd not in self._connections

    def _accept_pending(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _ACCEPT_ERRORS and not self._listener_paused_until:
                    # Out of descriptors: stop accepting for a tick instead of
                    # spinning on a listener that stays readable.
                    self._listener_paused_until = time.monotonic() + _TICK
                    with contextlib.suppress(KeyError, ValueError):
                        self._selector.unregister(self._listener)
                self._report(logging.ERROR, "logfunnel collector could not accept: %s", exc)
                return
            sock.setblocking(False)
            self.stats.connections += 1
            label = f"connection {self.stats.connections}"
            if self._tls is not None:
                try:
                    # The handshake runs in _read_tls, as the peer's bytes come.
                    sock = self._tls.wrap_socket(
                        sock, server_side=True, do_handshake_on_connect=False
                    )
                except OSError as exc:
                    sock.close()
                    self._report(logging.ERROR, "logfunnel: closed %s: %s", label, exc)
                    continue
                conn = _Connection(sock, _TLS, label)
                conn.tls = True
            elif self._address.scheme == "tcp":
                conn = _Connection(sock, _AUTH, label)
                conn.nonce = secrets.token_bytes(32)
                try:
                    sock.send(challenge_frame(conn.nonce))
                except OSError:
                    sock.close()
                    continue
            else:
                conn = _Connection(sock, _HELLO, label)
            self._connections[sock.fileno()] = conn
            self._selector.register(sock, selectors.EVENT_READ, conn)
            if len(self._connections) == 1:
                with self._idle:
                    self._idle.notify_all()

    def _read(self, fd: int) -> bool:
        """Read once from a connection; False when nothing was there (or it closed)."""
        conn = self._connections.get(fd)
        if conn is None or conn.paused:
            return False
        if conn.tls:
            size = self._read_tls(conn)
            if size < 0:
                return size == _STEPPED
        else:
            try:
                # Into one reused buffer: a fresh 256 KiB bytes object per read
                # would cost an mmap, page faults and an munmap each time.
                size = conn.sock.recv_into(self._recv_view)
            except (BlockingIOError, InterruptedError):
                return False
            except ConnectionResetError:
                # A producer killed with our handshake answer unread resets the
                # connection: that is its end, as an EOF is, not a collector error.
                size = 0
            except OSError as exc:
                self._close(conn, f"read failed: {exc}")
                return False
            conn.buf += self._recv_view[:size]
        if not size:
            if conn.buf:
                self.stats.partial_frames += 1
                self._report(
                    logging.WARNING,
                    "logfunnel: %s ended inside a %s; discarded %d partial bytes",
                    conn.label,
                    "line" if self._in_line(conn) else "frame",
                    len(conn.buf),
                )
            self._close(conn, None)
            return False
        try:
            if conn.state == _ACKS:
                raise FrameError("sent data on its acknowledgement channel")
            if conn.state != _STREAM:
                if not conn.tls and bytes(conn.buf[:3]) in _TLS_RECORDS:
                    raise FrameError(
                        "it speaks TLS, and this collector listens without: "
                        f"give it the {self._address.scheme}:// address"
                    )
                self._frames(conn)  # the handshake: stops where it ends
            if conn.state == _STREAM and conn.buf:
                conn.since = time.monotonic()
                if conn.lines:
                    self._lines(conn)
                else:
                    self._frames(conn)
            if conn.acking and conn.expected != conn.acked:
                self._to_ack.add(conn)
        except FrameError as exc:
            self.stats.bad_connections += 1
            self._close(conn, str(exc))
        return True

    def _read_tls(self, conn: _Connection) -> int:
        """``_read``'s part for a TLS connection: a handshake step, or the bytes it has.

        The bytes are added to ``conn.buf``; returns their count (0: the peer
        ended), or ``_NOTHING``, or ``_STEPPED`` for a handshake step. A read
        takes what the kernel has, up to a buffer's worth, then what TLS
        decrypted beyond it, which the selector would never report.
        """
        if conn.state == _TLS:
            return self._tls_handshake(conn)
        ssl = self._ssl
        sock = conn.sock
        view = self._recv_view
        room = len(view)
        got = 0
        ended = False
        try:
            while got < room:
                size = sock.recv_into(view[got:])
                if not size:
                    ended = True
                    break
                got += size
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, InterruptedError):
            pass
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError):
            ended = True  # an end without TLS's close_notify is an end, as over TCP
        except OSError as exc:
            self._close(conn, f"read failed: {exc}")
            return _NOTHING
        if got:
            conn.buf += view[:got]
            left = sock.pending() if not ended else 0  # type: ignore[attr-defined]
            if left:
                data = sock.recv(left)
                conn.buf += data
                got += len(data)
            return got
        return 0 if ended else _NOTHING

    def _tls_handshake(self, conn: _Connection) -> int:
        """One step of a peer's TLS handshake; once done, greet it as over TCP (the
        challenge when there is a key, else ``NO_CHALLENGE``)."""
        ssl = self._ssl
        sock = conn.sock
        try:
            sock.do_handshake()  # type: ignore[attr-defined]
        except ssl.SSLWantReadError:
            self._watch(conn, selectors.EVENT_READ)
            return _NOTHING
        except ssl.SSLWantWriteError:
            self._watch(conn, selectors.EVENT_READ | selectors.EVENT_WRITE)
            return _NOTHING
        except OSError as exc:
            from ._tls import handshake_failure

            self.stats.bad_connections += 1
            self._close(conn, f"refused: {handshake_failure(exc)}")
            return _NOTHING
        self._watch(conn, selectors.EVENT_READ)
        if self._address.key is not None:
            conn.nonce = secrets.token_bytes(32)
            greeting, conn.state = challenge_frame(conn.nonce), _AUTH
        else:
            greeting, conn.state = NO_CHALLENGE, _HELLO
        try:
            sock.sendall(greeting)
        except OSError as exc:
            self._close(conn, f"could not greet it after the TLS handshake: {exc}")
            return _NOTHING
        conn.since = time.monotonic()
        return _STEPPED

    def _watch(self, conn: _Connection, events: int) -> None:
        """Have the selector report ``events`` for ``conn`` (a TLS handshake may wait to write)."""
        with contextlib.suppress(KeyError, ValueError):
            if self._selector.get_key(conn.sock).events != events:
                self._selector.modify(conn.sock, events, conn)

    def _in_line(self, conn: _Connection) -> bool:
        """Whether the bytes ``conn`` holds begin a line (else a frame)."""
        return conn.lines and conn.state == _STREAM and bool(conn.buf[:1] != b"\0")

    def _frames(self, conn: _Connection) -> None:
        """Handle the whole frames in ``conn.buf``; in a handshake, only up to its end."""
        buf = conn.buf
        n = len(buf)
        pos = 0
        frame_at = self._frame_at
        handshake = conn.state != _STREAM
        try:
            while n - pos >= 5:
                end = frame_at(conn, buf, pos, n)
                if end < 0:
                    break
                pos = end
                if handshake and conn.state == _STREAM:
                    break
        finally:
            if pos:
                del buf[:pos]

    def _lines(self, conn: _Connection) -> None:
        """Line mode: whole lines go to the sinks as they are; a NUL byte starts a frame."""
        buf = conn.buf
        n = len(buf)
        pos = 0
        writers = self.plan.writers
        stats = self.stats
        try:
            while pos < n:
                if not buf[pos]:
                    end = self._frame_at(conn, buf, pos + 1, n)
                    if end < 0:
                        break
                    pos = end
                    continue
                last, nul = line_run(buf, pos, n)
                if last > pos:
                    run = buf[pos:last]  # a copy: bytearray, see TextWriter
                    count = run.count(b"\n")
                    for writer in writers:
                        writer.pending.append(run)
                        writer.lines += count
                    conn.expected += count
                    stats.records += count
                    pos = last
                if nul < 0:
                    break
        finally:
            if pos:
                del buf[:pos]

    def _frame_at(self, conn: _Connection, buf: bytearray, pos: int, n: int) -> int:
        """Handle the frame at ``pos``: return where the next one starts, or -1 if incomplete."""
        stream = conn.state == _STREAM
        kind, end, length = read_frame(buf, pos, n, self._max_frame if stream else _CONTROL_LIMIT)
        if end < 0:
            if length > UNRESERVED and conn.reserved < length:
                self._reserve(conn, length)
            return -1
        if conn.reserved:
            self._release(conn)
        if kind == KIND_TEXT and self._one_text and stream:
            # The hot path: sequence and the text, straight to the text sinks.
            levelno, seq, text = one_text(buf, pos, end)
            if seq != conn.expected:
                if seq < conn.expected and conn.acking:
                    return end  # written already: sent again after a reconnect
                self._sequences.gap(conn.label, conn.expected, seq)
            conn.expected = seq + 1
            for sink, writer in self.plan.text_sinks:
                if levelno >= sink.level:
                    writer.pending.append(text)
                    writer.lines += 1
            self.stats.records += 1
            return end
        body = bytes(buf[pos + 5 : end])
        if kind == KIND_TEXT and stream:
            self._text(conn, body)
        elif kind == KIND_RECORD and stream:
            self._record(conn, body)
        else:
            self._control(conn, kind, body)
        return end

    def _reserve(self, conn: _Connection, length: int) -> None:
        """Take ``length`` bytes of budget for ``conn``'s frame, or pause it until some is free."""
        if self._budget.reserve(conn, length):
            return
        conn.paused = True
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn.sock)

    def _release(self, conn: _Connection) -> None:
        """Give ``conn``'s budget back and let the waiting connections try again."""
        for other in self._budget.release(conn):
            if other.sock.fileno() in self._connections:
                other.paused = False
                other.since = time.monotonic()
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.register(other.sock, selectors.EVENT_READ, other)
                # Its next read re-checks the frame header and reserves again.

    def _control(self, conn: _Connection, kind: int, body: bytes) -> None:
        """The handshake (see ``_protocol._handshake``): authentication, then hello."""
        if conn.state == _AUTH:
            reply = check_auth(kind, body, self._address.key, conn.nonce)
            with contextlib.suppress(OSError):  # a peer already gone ends with its EOF
                conn.sock.send(reply)
            conn.state = _HELLO
            return
        if conn.state == _HELLO and kind == KIND_HELLO:
            try:
                hello = parse_hello(body)
            except VersionRefused as exc:
                with contextlib.suppress(OSError):
                    conn.sock.send(refusal_frame(str(exc)))
                raise
            if isinstance(hello, AckChannel):
                self._open_channel(conn, hello.token)
                return
            conn.identity, conn.stream = hello.identity, hello.stream
            conn.label = f"pid {hello.identity[1]} on {hello.identity[0]}"
            self.stats.producers.add(hello.identity)
            config, answer = self._config, self._config_frame
            if not hello.routes:
                config, answer = self._old_config, self._old_config_frame
            conn.lines = config["lines"] is not None
            if hello.ack and self._address.scheme != "unix":
                answer = self._resume(conn, hello.stream, hello.seq, config)
            else:
                # Lines carry no number, so a reconnect is where line mode sees a gap.
                conn.expected = self._sequences.start(hello.stream, hello.seq, conn.label)
            try:
                conn.sock.sendall(answer)
            except self._would_block:
                raise FrameError("peer does not read its handshake") from None
            except OSError:
                pass  # the peer is gone already (killed mid-handshake): its EOF ends it
            conn.state = _STREAM
            conn.since = time.monotonic()
            return
        raise FrameError(f"unexpected frame kind {kind} in this state")

    def _resume(
        self, conn: _Connection, stream: Stream, announced: int, config: dict[str, Any]
    ) -> bytes:
        """An acknowledging producer's hello: where its stream resumes, in the answer.

        Its earlier connection, if the collector still has it (a link that
        dropped without a word), is closed first: the producer sends again
        what that one had not delivered.
        """
        old = self._streams.get(stream)
        if old is not None and old is not conn:
            self._close(old, None)
        resume = self._sequences.resume(stream, announced, conn.label)
        conn.expected = conn.acked = resume
        conn.acking = True
        self._streams[stream] = conn
        token = secrets.token_hex(16)
        self._channels[token] = conn
        answer = {**config, "ack": True, "resume": resume, "channel": token}
        return config_frame(answer)

    def _open_channel(self, conn: _Connection, token: str) -> None:
        """A producer's acknowledgement channel arrives: pair it with its records connection."""
        owner = self._channels.pop(token, None)
        if owner is None or owner.sock.fileno() not in self._connections:
            raise FrameError("acknowledgement channel for no known connection")
        conn.state = _ACKS
        conn.label = f"{owner.label} (acknowledgements)"
        conn.partner, owner.partner = owner, conn
        try:
            conn.sock.sendall(config_frame({"ack": True}))
        except OSError:
            return  # gone already: its EOF ends both
        self._send_to(owner, b"")  # what waited for the channel goes now

    def _acknowledge(self) -> None:
        """Tell each producer how far its records are written (the sinks were just flushed)."""
        to_ack, self._to_ack = self._to_ack, set()
        for conn in to_ack:
            if conn.sock.fileno() not in self._connections:
                continue
            frame = b""  # only what a full channel held back last round
            if conn.expected != conn.acked:
                conn.acked = conn.expected
                frame = ack_frame(conn.expected)
            self._send_to(conn, frame)

    def _send_to(self, conn: _Connection, frame: bytes) -> None:
        """Queue ``frame`` for ``conn``'s producer and send what its acknowledgement channel
        takes now, never a frame cut; before the channel is there, it waits."""
        out = conn.out
        out += frame
        channel = conn.partner
        if channel is None or not out:
            if len(out) > _ACK_BACKLOG:
                self._close(conn, "never opened its acknowledgement channel")
            return
        try:
            sent = channel.sock.send(out)
        except self._would_block:
            sent = 0
        except OSError:
            return  # gone: its EOF ends it
        del out[:sent]
        if len(out) > _ACK_BACKLOG:
            self._close(conn, "does not read its acknowledgements")
        elif out:
            self._to_ack.add(conn)  # the rest goes with the next round

    def _sequence(self, conn: _Connection, seq: int) -> bool:
        """Count the record numbered ``seq``; False if it was written already (a resend)."""
        if seq != conn.expected:
            if seq < conn.expected and conn.acking:
                return False
            self._sequences.gap(conn.label, conn.expected, seq)
        conn.expected = seq + 1
        self.stats.records += 1
        return True

    def _record(self, conn: _Connection, body: bytes) -> None:
        seq, attrs = decode_record(body)
        if self._sequence(conn, seq):
            self.plan.handle(make_record(attrs, _host(conn)))

    def _text(self, conn: _Connection, body: bytes) -> None:
        """A record the producer formatted: text sinks get its lines, others the record."""
        levelno, seq, texts, structured = decode_text(body, len(self.plan.formats))
        record = None
        if structured:
            record = make_record(decode_record(structured)[1], _host(conn))
        elif self.plan.structured and not conn.lines:
            # (In line mode, only route loggers' records need it: see ``_sinks._plan``.)
            raise FrameError("a sink needs the structured record and the producer sent none")
        if self._sequence(conn, seq):
            self.plan.texts(levelno, texts, record)

    def handle(self, record: logging.LogRecord) -> None:
        """Give ``record`` to the sinks, as one from a producer would be given."""
        self.plan.handle(record)

    def _close(self, conn: _Connection, error: str | None) -> None:
        if conn.stream is not None:
            self._sequences.end(conn.stream, conn.expected)
            if self._streams.get(conn.stream) is conn:
                del self._streams[conn.stream]
        self._to_ack.discard(conn)
        if conn.acking and conn.partner is None:
            # Its channel never came: forget the token it was given.
            self._channels = {t: c for t, c in self._channels.items() if c is not conn}
        if conn.acking and conn.partner is not None:
            # The last word on this connection: how far it was written. A producer
            # that closed it at a bye waits for this before its fallback takes the rest.
            with contextlib.suppress(OSError):
                conn.partner.sock.send(bytes(conn.out) + ack_frame(conn.expected))
        partner, conn.partner = conn.partner, None
        if partner is not None:
            partner.partner = None
            # A records connection takes its acknowledgement channel with it. Not the
            # other way round: a producer that dies closes both, and the records
            # still unread in the first must be read before it ends.
            if conn.state != _ACKS and partner.sock.fileno() in self._connections:
                self._close(partner, None)
        fd = conn.sock.fileno()
        self._connections.pop(fd, None)
        if conn.paused:
            conn.paused = False
            self._budget.forget(conn)
        if conn.reserved:
            self._release(conn)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn.sock)
        conn.sock.close()
        if not self._connections:
            with self._idle:
                self._idle.notify_all()
        if error is not None:
            self._report(logging.ERROR, "logfunnel: closed %s: %s", conn.label, error)

    def _close_all(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for conn in list(self._connections.values()):
            self._close(conn, None)
        for sock in (self._listener, self._wake_r, self._wake_w):
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
            sock.close()
        self._selector.close()
        _live_collectors.discard(self)

    def note(self, level: int, msg: str, *args: object) -> None:
        """A record of the collector's own (logger ``logfunnel``) from any thread: the
        collector thread hands it to the sinks, between the records it writes. One given
        after ``stop()`` has begun its drain is not written."""
        self._notes.append((level, msg, args))
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _take_notes(self) -> None:
        while self._notes:
            level, msg, args = self._notes.popleft()
            self._report(level, msg, *args)

    def _report(self, level: int, msg: str, *args: object, skip: object = None) -> None:
        """A record from the collector itself, straight to the sinks (``skip``: not to one)."""
        record = logging.LogRecord("logfunnel", level, __file__, 0, msg, args, None)
        record.processName = "logfunnel-collector"
        record.created = time.time()
        if skip is not None:
            skip_marker(record, skip)
        self.handle(record)


def _host(conn: _Connection) -> str | None:
    """The host of ``conn``'s producer, as its hello said."""
    identity = conn.identity
    return None if identity is None else identity[0]


def _after_fork_in_child() -> None:
    for collector in list(_live_collectors):
        collector._forget_after_fork()
    _live_collectors.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
