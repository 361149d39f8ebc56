"""The opt-in ``"drop"`` overflow policy of a producer: never block, count what is dropped.

By default a producer writes each frame whole before its logging call
returns, and waits when the collector is behind (backpressure), so nothing is
lost. A program that must never wait (a latency-bound server, a signal
handler) asks for ``Funnel(overflow="drop")``. The collector hands the policy
to every producer in its handshake answer, and each producer then behaves as
follows:

* a record whose frame does not fit in the socket buffer at once is dropped
  (the newest record, never one already queued) and counted;
* a frame that fits only in part is kept and finished on the next logging
  call, or at close. A stream of frames cannot skip the rest of one that was
  started;
* after a drop, the next record that goes out is followed by a WARNING record
  ``logfunnel: dropped N record(s) ...``, with ``logfunnel_dropped=N``, so the
  count reaches the sinks with the rest of the log. The handler's ``dropped``
  attribute keeps the total.

A TLS socket takes no ``MSG_DONTWAIT``: it is made non-blocking for the
send. When TLS cannot take a frame at once it may already hold part of it,
and must be given the same bytes again; so that frame counts as started (it
is finished later, as one sent in part), not as dropped.
"""

from __future__ import annotations

import socket

# typing is for the type checker only: every worker imports this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final


__all__ = ["DropNewest"]

_FLAGS: Final = getattr(socket, "MSG_DONTWAIT", 0)


class DropNewest:
    """A producer's sender under the drop policy (see the module docstring)."""

    def __init__(self, *, tls: bool = False) -> None:
        #: Records dropped since the last count that reached the collector.
        self.unreported = 0
        self._pending = memoryview(b"")
        self._tls = tls

    def send(self, sock: socket.socket, frame: bytes) -> bool:
        """Send ``frame`` without waiting; False if it was dropped.

        The caller advances the sequence number only when this returns True.
        """
        if self._pending and not self._push(sock):
            self.unreported += 1
            return False
        sent = self._send_some(sock, memoryview(frame))
        if sent == 0:
            self.unreported += 1
            return False
        if sent < len(frame):
            self._pending = memoryview(frame)[max(sent, 0) :]
        return True

    def ready_to_report(self, sock: socket.socket) -> int:
        """How many drops to report now: 0 if none, or if a started frame still waits."""
        if not self.unreported or (self._pending and not self._push(sock)):
            return 0
        return self.unreported

    def send_report(self, sock: socket.socket, frame: bytes, *, wait: bool) -> bool:
        """Send ``frame``, the count's record; True if it went out (or started to)."""
        if wait:
            sock.sendall(frame)
        else:
            sent = self._send_some(sock, memoryview(frame))
            if sent == 0:
                return False
            if sent < len(frame):
                self._pending = memoryview(frame)[max(sent, 0) :]
        self.unreported = 0
        return True

    def restart(self) -> None:
        """Forget a started frame: its connection is gone (the collector counted it as partial)."""
        self._pending = memoryview(b"")

    def finish(self, sock: socket.socket) -> None:
        """Write the rest of a started frame, waiting as the socket's timeout allows (at close)."""
        while self._pending:
            sent = sock.send(self._pending)
            self._pending = self._pending[sent:]

    def _push(self, sock: socket.socket) -> bool:
        """Try to finish a started frame; True once nothing is pending."""
        sent = self._send_some(sock, self._pending)
        self._pending = self._pending[max(sent, 0) :]
        return not self._pending

    def _send_some(self, sock: socket.socket, data: memoryview) -> int:
        """How much of ``data`` went out now: 0 none, -1 (TLS) started, to be given again."""
        if self._tls:
            return _send_some_tls(sock, data)
        try:
            return sock.send(data, _FLAGS)
        except (BlockingIOError, InterruptedError):
            return 0


def _send_some_tls(sock: socket.socket, data: memoryview) -> int:
    import ssl  # a TLS producer has it already

    sock.setblocking(False)
    try:
        return sock.send(data)
    except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
        return -1
    finally:
        sock.setblocking(True)
