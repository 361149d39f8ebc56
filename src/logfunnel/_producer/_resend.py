"""A TCP producer's resend buffer: what it sent and the collector has not acknowledged.

Bytes are kept exactly as they were sent, numbered, oldest first, within a
byte bound. An acknowledgement drops what it covers; after a reconnect the
collector says where it stands and the rest is sent again, so a link that
drops loses and doubles nothing. The bound is what keeps a producer whose
collector is away from growing without limit: when it is full, the
overflow policy decides (see ``FunnelHandler``).
"""

from __future__ import annotations

from collections import deque

# typing is for the type checker only: every TCP worker imports this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Final

__all__ = ["RESEND_LIMIT", "ResendBuffer"]

#: Bytes of unacknowledged records a producer keeps by default.
RESEND_LIMIT: Final = 4 * 1024 * 1024


class ResendBuffer:
    """Numbered bytes, oldest first, at most ``limit`` of them (one record always fits).

    ``acked`` is the first number not acknowledged yet (every number below it
    is written), and ``mode`` what the kept bytes were prepared for (the
    collector's sinks as its handshake gave them): bytes for other sinks
    cannot be sent again as they are. ``patient`` is False once the producer
    waited its full patience for room and none came: until the collector
    acknowledges again, a full buffer sends records to the fallback at once.
    """

    __slots__ = ("_items", "acked", "limit", "mode", "patient", "size")

    def __init__(self, acked: int, limit: int = RESEND_LIMIT) -> None:
        self._items: deque[tuple[int, bytes]] = deque()
        self.acked = acked
        self.limit = limit
        self.mode: object = None
        self.patient = True
        self.size = 0

    def __len__(self) -> int:
        return len(self._items)

    def has_room(self, size: int) -> bool:
        """Whether ``size`` more bytes fit (an empty buffer takes a record of any size)."""
        return not self._items or self.size + size <= self.limit

    def add(self, seq: int, data: bytes) -> None:
        self._items.append((seq, data))
        self.size += len(data)

    def forget_last(self) -> None:
        """Take back the record just added (it was dropped, never sent)."""
        self.size -= len(self._items.pop()[1])

    def acknowledge(self, next_seq: int) -> None:
        """Forget every record numbered below ``next_seq``."""
        items = self._items
        while items and items[0][0] < next_seq:
            self.size -= len(items.popleft()[1])
        self.acked = max(self.acked, next_seq)

    def pending(self) -> Iterator[bytes]:
        """The bytes still unacknowledged, oldest first."""
        return (data for _, data in self._items)

    def clear(self) -> int:
        """Forget everything; returns how many records that was."""
        count = len(self._items)
        self._items.clear()
        self.size = 0
        return count
