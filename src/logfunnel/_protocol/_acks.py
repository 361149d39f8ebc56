"""Acknowledgements: the collector tells a TCP producer how far its records are written.

Over TCP a link can drop with records in flight, so a producer keeps what it
sent until the collector acknowledges it (see ``_producer._resend``). An
acknowledgement is a frame ``u32 9 | u8 KIND_ACK | u64 next``: every record
of the stream numbered below ``next`` is written by the sinks (or queued to
a sink the slow-sink guard moved to its own thread) and flushed. The numbers
only grow. A collector that stops for good says ``KIND_BYE`` (an empty
frame) before it ends its side, so its producers write what comes after to
their fallback instead of waiting for it to come back.

``AckReader`` takes whatever bytes a non-blocking read gave, in any pieces,
and keeps the latest number; anything else on that direction of the stream
is a ``FrameError``. Nothing here touches a socket.
"""

from __future__ import annotations

import struct

from ._codec import HEADER, KIND_ACK, KIND_BYE, FrameError

# typing is for the type checker only: every TCP worker imports this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

__all__ = ["ACK_SIZE", "AckReader", "ack_frame", "bye_frame"]

_ACK: Final = struct.Struct("<IBQ")
ACK_SIZE: Final = _ACK.size
_BYE: Final = HEADER.pack(1, KIND_BYE)


def ack_frame(next_seq: int) -> bytes:
    """ "Every record numbered below ``next_seq`` is written."""
    return _ACK.pack(_ACK.size - 4, KIND_ACK, next_seq)


def bye_frame() -> bytes:
    """ "This collector is stopping for good."""
    return _BYE


class AckReader:
    """What the collector said so far: the latest acknowledgement, and whether it said bye."""

    __slots__ = ("_buf", "acked", "bye")

    def __init__(self, acked: int) -> None:
        self._buf = bytearray()
        #: Every record numbered below this is written.
        self.acked = acked
        self.bye = False

    def feed(self, data: bytes) -> int:
        """Take the bytes read; returns ``acked``. A malformed frame is a ``FrameError``."""
        buf = self._buf
        buf += data
        pos, n = 0, len(buf)
        try:
            while n - pos >= HEADER.size:
                length, kind = HEADER.unpack_from(buf, pos)
                if kind == KIND_BYE and length == 1:
                    self.bye = True
                    pos += HEADER.size
                    continue
                if kind != KIND_ACK or length != _ACK.size - 4:
                    raise FrameError(f"unexpected frame from the collector (kind {kind})")
                if n - pos < _ACK.size:
                    break
                next_seq = _ACK.unpack_from(buf, pos)[2]
                if next_seq < self.acked:
                    raise FrameError(f"acknowledgement went back from {self.acked} to {next_seq}")
                self.acked = next_seq
                pos += _ACK.size
        finally:
            if pos:
                del buf[:pos]
        return self.acked
