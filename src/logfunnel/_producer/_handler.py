"""The producer side: a ``logging.Handler`` that sends records to a collector.

Each record is encoded and written to the socket before the logging call
returns. Once the call has returned, the bytes are in the kernel, so a
producer that then calls ``os._exit`` or is SIGKILLed has lost nothing. There
is no buffer or thread in the producer to die with it. A full socket blocks the
caller, so a slow collector gives backpressure and memory stays bounded.

Over TCP (and TLS) a link can drop with records in flight, so there the handler also
keeps the bytes it sent until the collector acknowledges them (a bounded
resend buffer, ``_resend``). After a cut it reconnects with a capped,
growing delay, says where its stream stands and sends again what was not
acknowledged; the collector skips what it had already written. The logging
call still returns once the bytes are in the kernel, without waiting for a
round trip, and acknowledgements are read every few records, not at each. A
collector that stops for good says bye first: from then on
records go to the fallback, as over a Unix socket.

Fork safety is designed in: a fork child never writes into its parent's
connection. ``os.register_at_fork`` drops the inherited socket in the child,
``emit`` also checks the owner pid, and the child opens its own connection on
its first record. ``logging`` re-creates handler locks in the child itself.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
import weakref
from logging import WARNING, Formatter, Handler, LogRecord

from .._protocol._address import ENV_ADDRESS, AttachError, parse_address
from .._protocol._codec import LINE_LIMIT, FrameError, encode_record, encode_text, record_body
from .._threads import collector_threads
from ._format import format_text, producer_formatter

# typing is for the type checker only: every worker imports this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    import ssl
    from collections.abc import Callable
    from types import ModuleType
    from typing import Any, Final

    from .._json import JSONFormatter
    from .._protocol._acks import AckReader
    from ._format import ProducerFormatter
    from ._overflow import DropNewest
    from ._resend import ResendBuffer

__all__ = ["FunnelHandler", "write_stderr"]

_process_start = time.time()
# After a failed connect, records go to the fallback for this long before the
# next try, so a dead collector costs one connect attempt per interval, not per record.
_RETRY_INTERVAL: Final = 1.0

_live_handlers: weakref.WeakSet[FunnelHandler] = weakref.WeakSet()
# Puts the current span's ids on a record (see _trace): None until this process
# imports opentelemetry.trace, so a worker without OpenTelemetry pays one test.
_add_trace: Callable[[LogRecord], None] | None = None
_trace_watched = False
# Numbers the handlers' record streams within this process (see the hello).
_streams = itertools.count(1)

# Longer records go as frames even in line mode: UTF-8 takes at most 4 bytes
# a character, so a line sent bare always fits the collector's LINE_LIMIT.
_LINE_CHARS: Final = LINE_LIMIT // 4 - 1

# Below every level: outside line mode the collector filters by each sink's level.
_ANY_LEVEL: Final = -(2**63)

#: Acknowledgements are read when a record's number is a multiple of 32 (and when the
#: resend buffer is full, and at close): a read per record (a system call that
#: nearly always finds nothing) cost the producer 20% more instructions a record.
#: A collector's bye is seen that many records late at most; what was sent meanwhile
#: is kept and goes to the fallback, as at any stop.
_ACK_READ_MASK: Final = 31
# Over TCP after a cut: the first retry comes at once, then after a delay
# that doubles up to the cap. A reconnect waits this long for an answer.
_BACKOFF_FIRST: Final = 0.05
_BACKOFF_CAP: Final = 2.0
_RECONNECT_TIMEOUT: Final = 2.0
# How long a full resend buffer makes a logging call wait for room (the
# "block" policy) before that record goes to the fallback, and how long close
# waits for the last acknowledgements.
_ROOM_PATIENCE: Final = 30.0
_CLOSE_PATIENCE: Final = 5.0


_FALLBACK_FORMAT: Final = (
    "%(asctime)s %(processName)s[%(process)d] %(levelname)s %(name)s: %(message)s"
    " [logfunnel: collector unreachable]"
)
#: How a record that could not be sent is written to stderr.
_FALLBACK_FORMATTER: Final = Formatter(_FALLBACK_FORMAT)


class FunnelHandler(Handler):
    """Send every record to the collector at ``address``.

    Usable directly, or from ``dictConfig`` as ``{"class":
    "logfunnel.FunnelHandler", "address": "..."}``. ``attach()`` is the usual
    way in: it also routes the root logger here. The steps are split like the
    stdlib ``QueueHandler``'s, ``emit`` calls ``prepare`` then ``send``, so a
    subclass can change one of them: ``prepare`` returns the bytes that
    go on the wire for a record, whatever the mode (see ``_collector``), and
    ``send`` writes them.

    ``tls`` is the ``ssl.SSLContext`` for a ``tls://`` address; without it
    one is made from the environment at the first connection (see ``_tls``).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        key: bytes | str | None = None,
        timeout: float = 10.0,
        level: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(level)
        if not _trace_watched:
            _watch_trace()
        text = address or os.environ.get(ENV_ADDRESS)
        if not text:
            raise ValueError(
                f"FunnelHandler needs an address: pass the Funnel's .address or set ${ENV_ADDRESS}"
            )
        self._address = parse_address(text, key)
        # For a tls:// address: the client context (None until the first connection
        # makes one from the environment, see _tls).
        self._tls = tls
        # How the acknowledgement channel is read, without waiting and waiting (a TLS
        # one has its own way): one attribute, for the 29 (see below).
        self._channel_io: (
            tuple[
                Callable[[socket.socket], tuple[bytes, bool]],
                Callable[[socket.socket, float], bool],
            ]
            | None
        ) = None
        # Over TCP: checks the connection before each send (see _connect.check_open).
        self._check_open: Callable[[socket.socket], None] | None = None
        self.timeout = timeout
        #: The collector's answer to our hello (its level and frame limit).
        self.config: dict[str, Any] = {}
        #: Records that could not be sent and went to the fallback (stderr).
        self.fallbacks = 0
        #: Records dropped under the collector's ``overflow="drop"`` policy.
        self.dropped = 0
        self._dropper: DropNewest | None = None
        # The loss counts last said on stderr (see report_losses).
        self._reported = (0, 0)
        self._closed = False
        self._sock: socket.socket | None = None
        self._pid = os.getpid()
        self._seq = 0
        # Tells this handler's sequence from another's in the same process.
        self._stream = next(_streams)
        self._retry_at = 0.0
        # The collector's text sinks, formatted here (see _sinks), each with what it
        # writes after a record; empty: none.
        self._formatters: list[tuple[ProducerFormatter | JSONFormatter, str]] = []
        self._structured = True
        # Line mode (see _collector): the one formatter; the level below which
        # records are not sent (in line mode the sinks' level, else any).
        self._line: ProducerFormatter | JSONFormatter | None = None
        self._send_level = _ANY_LEVEL
        # Over TCP, once the collector acknowledges (see the module docstring):
        # what it has not acknowledged yet is in ``_resend``.
        self._resend: ResendBuffer | None = None
        self._acks: AckReader | None = None
        # The connection acknowledgements come on (see _handshake.AckChannel).
        self._ack_sock: socket.socket | None = None
        self._backoff = 0.0
        # No more attributes without taking some away: up to 29 in all, CPython
        # 3.11 keeps an instance's attributes in a shared-key layout, which is
        # what lets emit's attribute reads and method calls be specialised (with
        # more, each record costs about 3% more instructions).
        _live_handlers.add(self)

    @property
    def address(self) -> str:
        """The collector's address, without its key."""
        return str(self._address)

    def _on_several_loggers(self) -> None:
        """Send each record once even though it meets this handler on several loggers.

        ``Logger.callHandlers`` calls the handlers of one record in one thread,
        from the logger it was logged on up to the root: the first meeting
        sends it (the collector routes it the rest of the way, see
        ``_loggers``), later ones see the same record object and skip it.
        Only such a handler pays for the check: it replaces ``handle`` on the
        instance, the usual handler keeps the stdlib's.
        """
        seen = threading.local()
        handle = super().handle

        def handle_once(record: LogRecord) -> Any:
            if getattr(seen, "record", None) is record:
                return False
            seen.record = record
            return handle(record)

        self.handle = handle_once  # type: ignore[method-assign]

    # -- connection --------------------------------------------------------

    def connect(self) -> dict[str, Any]:
        """Open the connection now (normally done on the first record).

        Raises ``AttachError`` when no collector answers within ``timeout``.
        """
        with self.lock:  # type: ignore[union-attr]
            self._connect()
        return self.config

    def _connect(self) -> None:
        # Sockets are imported by the first connection, not by every worker's import.
        from . import _connect

        self._drop_connection()
        self._pid = os.getpid()
        scheme = self._address.scheme
        network = scheme != "unix"
        if scheme == "tls":
            from . import _tls

            if self._tls is None:
                self._tls = _tls.client_context()
            self._channel_io = _tls.read_nowait, _tls.wait_readable
        else:
            self._channel_io = _connect.read_nowait, _connect.wait_readable
        hello = {
            # In line mode it sends the route loggers' records as frames (see prepare).
            "routes": True,
            "host": _connect.HOST,
            "pid": self._pid,
            "start": _process_start,
            # Where the stream stands: after a cut, its first unacknowledged record.
            "seq": self._resend.acked if self._resend is not None else self._seq,
            "stream": self._stream,
            "ack": network,
        }
        timeout = self.timeout if self._resend is None else min(self.timeout, _RECONNECT_TIMEOUT)
        self._sock, self.config = _connect.client_handshake(
            self._address, hello, timeout, self._tls
        )
        # A TLS socket cannot be peeked at; a TLS collector always acknowledges instead.
        check = scheme == "tcp" and _connect.CAN_PEEK
        self._check_open = _connect.check_open if check else None
        specs = self.config.get("formats", ())
        self._formatters = [(producer_formatter(spec), spec["terminator"]) for spec in specs]
        self._structured = bool(self.config.get("structured", True))
        lines = self.config.get("lines")
        if lines is not None and len(self._formatters) == 1:
            # Lines carry no level: records no sink takes are not sent at all.
            self._line, self._send_level = self._formatters[0][0], int(lines)
            routes = self.config.get("routes")
            if routes:
                from .._protocol._loggers import UnderRoutes

                self._line.routes = UnderRoutes(str(name) for name in routes)
        else:
            self._line, self._send_level = None, _ANY_LEVEL
        if self.config.get("overflow") == "drop":
            from ._overflow import DropNewest

            self._dropper = self._dropper or DropNewest(tls=scheme == "tls")
            self._dropper.restart()
        else:
            self._dropper = None
        if network and self.config.get("ack") is True:
            try:
                self._ack_sock = _connect.open_ack_channel(
                    self._address, str(self.config.get("channel")), timeout, self._tls
                )
            except AttachError:
                self._drop_connection()
                raise
            self._resume(int(self.config.get("resume", self._seq)))
        elif self._resend is not None:
            self._leave_acknowledged_mode("the collector there does not acknowledge")

    def _resume(self, resume: int) -> None:
        """The collector acknowledges: skip what it has, send again the rest (see ``_resend``)."""
        from .._protocol._acks import AckReader
        from ._resend import ResendBuffer

        config = self.config
        mode = tuple(config.get(k) for k in ("lines", "formats", "structured", "routes"))
        resend = self._resend
        if resend is None:
            resend = self._resend = ResendBuffer(self._seq)
        elif not resend.acked <= resume <= self._seq:
            self._drop_connection()
            raise AttachError(
                f"the collector at {self.address} resumes at record {resume}, "
                f"but this stream sent {resend.acked} to {self._seq - 1} unacknowledged"
            )
        resend.acknowledge(resume)
        self._acks = AckReader(resume)
        self._backoff = 0.0
        self._check_open = None  # reading acknowledgements notices the end too
        if len(resend) and mode != resend.mode:
            # Prepared for other sinks than the new collector's: they cannot go as they are.
            lost = resend.clear()
            self._seq = resend.acked
            write_stderr(
                f"logfunnel: pid {self._pid}: {lost} unacknowledged record(s) were not sent "
                f"again: the collector at {self.address} now has other sinks\n"
            )
        resend.mode = mode
        assert self._sock is not None
        for data in resend.pending():
            self._sock.sendall(data)

    def _leave_acknowledged_mode(self, why: str) -> None:
        """Back to sending without acknowledgements; what was never acknowledged goes to the
        fallback (it may also be in the log, if only its acknowledgement was lost)."""
        resend, self._resend, self._acks = self._resend, None, None
        if resend is None or not len(resend):
            return
        write_stderr(
            f"logfunnel: pid {self._pid}: {len(resend)} record(s) sent to {self.address} were "
            f"never acknowledged ({why}); they follow here\n"
        )
        self._spill_kept(resend)

    def _drop_connection(self) -> None:
        sock, self._sock = self._sock, None
        acks, self._ack_sock = self._ack_sock, None
        for each in (sock, acks):
            if each is not None:
                each.close()

    def _after_fork(self) -> None:
        # Close our copy only (close, never shutdown: the parent still uses it).
        self._drop_connection()
        # The parent's unacknowledged records are the parent's to send again.
        self._resend, self._acks = None, None
        self._pid = os.getpid()
        self._seq = 0
        self._stream = next(_streams)
        self._retry_at = 0.0
        self.fallbacks = 0
        self.dropped = 0
        self._reported = (0, 0)
        self._dropper = None

    # -- the logging path --------------------------------------------------

    def emit(self, record: LogRecord) -> None:
        """Send ``prepare(record)``; a record that cannot be sent goes to the fallback."""
        if collector_threads and _in_collector(record):
            return
        if self._resend is not None and self._pid == os.getpid():
            self._emit_acknowledged(record)
            return
        try:
            if (self._sock is None or self._pid != os.getpid()) and not self._reconnect(record):
                return
            if self._resend is not None:
                self._emit_acknowledged(record)
                return
            if record.levelno >= self._send_level or self._routed_below(record):
                self.send(self.prepare(record))
        except AttachError as exc:
            self._retry_at = time.monotonic() + _RETRY_INTERVAL
            self._fallback(record, exc)
        except OSError as exc:
            self._drop_connection()
            self._fallback(record, exc)
        except Exception:
            self.handleError(record)

    def _routed_below(self, record: LogRecord) -> bool:
        """Whether a record below line mode's level is sent all the same: one of a route
        logger, whose handlers in the parent may take levels the root sinks do not (the
        handler's own level already held back what none of them takes)."""
        line = self._line
        return line is not None and line.routes is not None and line.routes[record.name]

    def _emit_acknowledged(self, record: LogRecord) -> None:
        """Over TCP with acknowledgements: keep, then send; a dropped link loses nothing."""
        resend = self._resend
        assert resend is not None
        try:
            if record.levelno < self._send_level and not self._routed_below(record):
                return
            if self._sock is not None and not self._seq & _ACK_READ_MASK:
                try:
                    self._read_acks()
                except _CollectorStopped:
                    raise
                except (OSError, FrameError) as exc:
                    self._link_lost(exc)  # this record waits with the others
            data = self.prepare(record)
            if not resend.has_room(len(data)) and not self._make_room(len(data)):
                if self._dropper is not None:
                    self.dropped += 1
                    self._dropper.unreported += 1
                else:
                    self._fallback(record, None)
                return
            sock = self._sock
            if sock is None:
                resend.add(self._seq, data)
                self._seq += 1
                if time.monotonic() >= self._retry_at:
                    self._reconnect_acknowledged()
                return
            resend.add(self._seq, data)  # kept first: a failed send loses nothing
            self._seq += 1
            if self._dropper is None:
                sock.sendall(data)
            elif not self._dropper.send(sock, data):
                resend.forget_last()
                self._seq -= 1
                self.dropped += 1
        except _CollectorStopped as exc:
            self._collector_stopped()
            self._retry_at = time.monotonic() + _RETRY_INTERVAL
            self._fallback(record, exc)
        except (OSError, FrameError) as exc:
            try:
                self._link_lost(exc)
            except _CollectorStopped:
                self._collector_stopped()  # this record was kept: it goes to the fallback
                self._retry_at = time.monotonic() + _RETRY_INTERVAL
        except Exception:
            self.handleError(record)

    def _collector_stopped(self) -> None:
        """The collector said bye: end this side, take its last acknowledgement, and write
        to the fallback whatever it did not get, as over a Unix socket.

        Closing the records connection tells the stopping collector that nothing
        more comes, so it reads to the end of it and then acknowledges once more
        before it closes the channel (see ``_collector._loop``).
        """
        resend, acks, channel = self._resend, self._acks, self._ack_sock
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        deadline = time.monotonic() + _RECONNECT_TIMEOUT
        assert self._channel_io is not None
        read_nowait, wait_readable = self._channel_io
        while channel is not None and acks is not None and time.monotonic() < deadline:
            try:
                if not wait_readable(channel, deadline - time.monotonic()):
                    break
                data, ended = read_nowait(channel)
                if data:
                    acks.feed(data)
            except (OSError, FrameError):
                break
            if ended:
                break
        self._drop_connection()
        self._resend, self._acks = None, None
        if resend is None:
            return
        if acks is not None and resend.acked < acks.acked <= self._seq:
            resend.acknowledge(acks.acked)
        self._spill_kept(resend)

    def _spill_kept(self, resend: ResendBuffer) -> None:
        """Write every record ``resend`` still keeps to the fallback, and forget them."""
        for data in resend.pending():
            self._spill(data)
        resend.clear()

    def _spill(self, data: bytes) -> None:
        """Write to the fallback a record that was sent but never written: its text, decoded
        from the bytes kept for it (a line, or a frame of formatted text or of a record)."""
        from .._protocol._codec import (
            HEADER,
            KIND_RECORD,
            KIND_TEXT,
            decode_record,
            decode_text,
            make_record,
        )

        self.fallbacks += 1
        marker = " [logfunnel: collector unreachable]\n"
        try:
            if self._line is not None and not data.startswith(b"\0"):
                write_stderr(data.decode("utf-8", "replace").rstrip("\n") + marker)
                return
            frame = data[1:] if data.startswith(b"\0") else data
            kind = HEADER.unpack_from(frame)[1]
            body = frame[HEADER.size :]
            if kind == KIND_TEXT:
                _, _, texts, structured = decode_text(body, len(self._formatters) or 1)
                if texts:
                    text = texts[0].decode("utf-8", "replace").rstrip("\n")
                    write_stderr(text + marker)
                    return
                kind, body = KIND_RECORD, structured
            if kind == KIND_RECORD:
                record = make_record(decode_record(body)[1])
                write_stderr(_FALLBACK_FORMATTER.format(record) + "\n")
        except Exception:
            write_stderr(f"logfunnel: a record of {len(data)} bytes could not be shown\n")

    def _read_acks(self) -> None:
        """Take the acknowledgements that arrived, without waiting; raise if the link ended."""
        sock, acks, resend = self._ack_sock, self._acks, self._resend
        assert sock is not None
        assert acks is not None
        assert resend is not None
        assert self._channel_io is not None
        data, ended = self._channel_io[0](sock)
        if data:
            acks.feed(data)
        if acks.acked > self._seq:
            raise FrameError(f"acknowledgement of record {acks.acked - 1}, never sent")
        if acks.bye:
            raise _CollectorStopped(f"the collector at {self.address} stopped")
        if acks.acked > resend.acked:
            resend.acknowledge(acks.acked)
        if ended:
            raise ConnectionResetError(f"the collector at {self.address} ended the connection")

    def _take_last_acks(self) -> bool:
        """Before a broken link's channel is closed: acknowledgements already in its buffer
        still count (they are read every few records only), so the next collector is not
        sent again what the last one wrote. True if they end with the collector's bye."""
        sock, acks, resend = self._ack_sock, self._acks, self._resend
        if sock is None or acks is None or resend is None or self._channel_io is None:
            return False
        try:
            data, _ = self._channel_io[0](sock)
            acks.feed(data)
        except (OSError, FrameError):
            return False
        if resend.acked < acks.acked <= self._seq:
            resend.acknowledge(acks.acked)
        return acks.bye

    def _link_lost(self, exc: BaseException) -> None:
        """The connection broke: what it had not acknowledged waits for the next one.

        Raises ``_CollectorStopped`` if the collector had said bye: it stopped for
        good, so nothing waits for it.
        """
        bye = self._take_last_acks()
        self._drop_connection()
        if bye:
            raise _CollectorStopped(f"the collector at {self.address} stopped")
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(max(self._backoff * 2, _BACKOFF_FIRST), _BACKOFF_CAP)

    def _reconnect_acknowledged(self) -> bool:
        """Connect again and resend; False (and the next try scheduled) if it did not work."""
        try:
            self._connect()
        except (AttachError, OSError, FrameError) as exc:
            self._link_lost(exc)
            return False
        return self._sock is not None

    def _make_room(self, size: int) -> bool:
        """Wait until ``size`` more bytes fit in the resend buffer (the "block" policy).

        Under the drop policy it does not wait. After ``_ROOM_PATIENCE`` of
        waiting it gives up, and that record goes to the fallback; so do the
        next ones, at once, until the collector acknowledges again (a collector
        that never comes back must not cost every later record that patience).
        A bye from the collector reaches the caller, as from ``_read_acks``.
        """
        resend = self._resend
        assert resend is not None
        if self._dropper is not None:
            return False
        patience = _ROOM_PATIENCE if resend.patient else 0.0
        resend.patient = self._await_acks(lambda: resend.has_room(size), patience)
        return resend.patient

    def _wait_acknowledged(self, patience: float) -> None:
        """Wait until every record sent is acknowledged, or ``patience`` is over (at close)."""
        try:
            self._await_acks(lambda: self._resend is None or not len(self._resend), patience)
        except _CollectorStopped:
            self._collector_stopped()

    def _await_acks(self, done: Callable[[], bool], patience: float) -> bool:
        """Read acknowledgements until ``done()``, connecting again after a cut; False once
        ``patience`` is over. A bye from the collector is raised (``_CollectorStopped``)."""
        deadline = time.monotonic() + patience
        tried = False  # one try even with no patience: a reconnect, or the acks waiting
        while not done():
            now = time.monotonic()
            if tried and now >= deadline:
                return False
            tried = True
            if self._sock is None:
                if now < self._retry_at:
                    time.sleep(max(0.0, min(self._retry_at, deadline) - now))
                else:
                    self._reconnect_acknowledged()
                continue
            try:
                assert self._ack_sock is not None
                assert self._channel_io is not None
                if self._channel_io[1](self._ack_sock, max(0.0, min(0.5, deadline - now))):
                    self._read_acks()
            except _CollectorStopped:
                raise
            except (OSError, FrameError) as exc:
                self._link_lost(exc)
        return True

    def _reconnect(self, record: LogRecord) -> bool:
        """Connect (a fork child, or after a failure); False if ``record`` went to the fallback.

        After a failed connect, records go to the fallback for a while before
        the next try, so a dead collector costs one attempt per interval.
        """
        if time.monotonic() < self._retry_at:
            self._fallback(record, None)
            return False
        self._connect()
        return True

    def prepare(self, record: LogRecord) -> bytes:
        """What goes on the wire for ``record``.

        In line mode, a one-line record is its formatted line; any other is
        a NUL byte and a frame, and so is a record of a route logger, with its
        structured record for the route's handlers. Otherwise it is a frame
        with the lines of the collector's text sinks, formatted here, and the
        structured record if another sink needs it.
        """
        line = self._line
        if line is not None:
            text = format_text(line, record)
            routes = line.routes
            if routes is not None and routes[record.name]:
                structured = record_body(record, self._seq)
                return b"\0" + encode_text(record.levelno, self._seq, [text + "\n"], structured)
            if "\n" not in text and "\0" not in text and len(text) <= _LINE_CHARS:
                return (text + "\n").encode("utf-8", "backslashreplace")
            return b"\0" + encode_text(record.levelno, self._seq, [text + "\n"])
        if _add_trace is not None:
            _add_trace(record)
        formatters = self._formatters
        if not formatters:
            return encode_record(record, self._seq)
        texts = [
            format_text(formatter, record) + terminator for formatter, terminator in formatters
        ]
        structured = record_body(record, self._seq) if self._structured else b""
        return encode_text(record.levelno, self._seq, texts, structured)

    def send(self, data: bytes) -> None:
        """Write one record's bytes whole; the sequence number advances only once they are out."""
        sock = self._sock
        assert sock is not None
        dropper = self._dropper
        try:
            if self._check_open is not None:
                self._check_open(sock)
            if dropper is None:
                sock.sendall(data)
            elif not dropper.send(sock, data):
                self.dropped += 1
                return
        except BaseException:
            # A frame cut short leaves the stream unusable: start afresh.
            self._drop_connection()
            raise
        self._seq += 1
        if dropper is not None and dropper.unreported:
            self._send_drop_count(sock, dropper, wait=False)

    def _send_drop_count(self, sock: socket.socket, dropper: DropNewest, *, wait: bool) -> None:
        """Under the drop policy: tell the sinks, in a record of its own, how many were dropped."""
        count = dropper.ready_to_report(sock)
        if not count:
            return
        data = self.prepare(_drops_record(count))
        if dropper.send_report(sock, data, wait=wait):
            if self._resend is not None:
                self._resend.add(self._seq, data)
            self._seq += 1

    def _fallback(self, record: LogRecord, error: BaseException | None) -> None:
        """A record we could not send is written to stderr and counted, never dropped silently."""
        self.fallbacks += 1
        try:
            text = _FALLBACK_FORMATTER.format(record) + "\n"
            if error is not None and self.fallbacks == 1:
                text += f"logfunnel: cannot send to {self.address}: {error}\n"
            write_stderr(text)
        except Exception:
            pass
        if self._closed:
            # After close (logging.shutdown at exit) no later report comes: count now.
            self.report_losses()

    def flush(self) -> None:
        """Under the drop policy, finish a started frame and send the count of drops;
        over TCP, wait (a bounded time) until what was sent is acknowledged.

        Records are in the kernel once their logging call returned: over a
        Unix socket there is nothing else to flush.
        """
        if self._dropper is not None or self._resend is not None:
            with self.lock:  # type: ignore[union-attr]
                self._finish_dropper()
                if self._resend is not None and self._pid == os.getpid():
                    self._wait_acknowledged(_CLOSE_PATIENCE)

    def close(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._finish_dropper()
            if self._resend is not None and self._pid == os.getpid():
                self._wait_acknowledged(_CLOSE_PATIENCE)
                self._leave_acknowledged_mode(f"none came within {_CLOSE_PATIENCE:g} s")
            self._drop_connection()
            self.report_losses()
            self._closed = True
        _live_handlers.discard(self)
        super().close()

    def _finish_dropper(self) -> None:
        """Under the drop policy: finish a started frame and send the count of drops."""
        dropper, sock = self._dropper, self._sock
        if dropper is None or sock is None or self._pid != os.getpid():
            return
        sock.settimeout(self.timeout)  # at close: wait for the collector, not forever
        try:
            dropper.finish(sock)
            self._send_drop_count(sock, dropper, wait=True)
        except OSError:
            pass
        finally:
            sock.settimeout(None)

    def report_losses(self) -> None:
        """Say on stderr how many records did not reach the collector, if any.

        Called at close, and by processes that end without closing (a
        multiprocessing child leaves through ``os._exit``). Said once for
        each new count, however often it is called.
        """
        unsent = self.fallbacks
        undropped = self._dropper.unreported if self._dropper is not None else 0
        if not (unsent or undropped) or self._pid != os.getpid():
            return
        if (unsent, undropped) == self._reported:
            return
        self._reported = (unsent, undropped)
        write_stderr(
            f"logfunnel: pid {self._pid}: {unsent} record(s) could not be sent to "
            f"{self.address} and were written to stderr instead"
            + (f"; {undropped} record(s) were dropped (overflow='drop')" if undropped else "")
            + "\n"
        )

    def __repr__(self) -> str:
        return f"<FunnelHandler {self.address} ({self.level})>"


class _CollectorStopped(ConnectionError):
    """The collector said bye: it stopped for good, nothing more will be acknowledged."""


def _watch_trace() -> None:
    """Once per process: send the worker's span with its records once it imports the API."""
    global _trace_watched
    _trace_watched = True
    from ._imports import when_imported

    when_imported("opentelemetry.trace", _trace_imported)


def _trace_imported(module: ModuleType) -> None:
    global _add_trace
    from ._trace import trace_adder

    _add_trace = trace_adder(module)


def _in_collector(record: LogRecord) -> bool:
    """Whether a sink logged ``record`` from inside this process's collector thread: it
    then goes straight to the sinks, since writing to our own socket could block on the
    very thread that must read it."""
    collector = collector_threads.get(threading.get_ident())
    if collector is None:
        return False
    collector.handle(record)
    return True


def _drops_record(count: int) -> LogRecord:
    """The record that tells the sinks how many records the drop policy dropped."""
    record = LogRecord(
        "logfunnel",
        WARNING,
        __file__,
        0,
        "logfunnel: dropped %d record(s) because the collector was not keeping up"
        " (overflow='drop')",
        (count,),
        None,
    )
    record.__dict__["logfunnel_dropped"] = count
    return record


def write_stderr(text: str) -> None:
    """Write to ``sys.stderr``, or to descriptor 2 once the interpreter has let go of it."""
    try:
        stream = sys.stderr
        if stream is not None:
            stream.write(text)
            stream.flush()
            return
    except Exception:
        pass
    try:  # noqa: SIM105 - at interpreter shutdown, contextlib may already be gone
        os.write(2, text.encode("utf-8", "backslashreplace"))
    except Exception:
        pass


def _after_fork_in_child() -> None:
    global _process_start
    _process_start = time.time()
    for handler in list(_live_handlers):
        handler._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
