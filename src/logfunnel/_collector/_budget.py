"""The buffer budget: how many bytes all connections together may hold in large frames.

Frames up to ``UNRESERVED`` bytes are buffered per connection without asking.
A larger one first reserves its length from one collector-wide budget; while
the budget is spent, the connections that want more wait unread (their
producers feel backpressure). The budget is at least one maximum frame, so one
large frame always progresses. So many peers sending 64 MiB frames at once
cannot make the collector hold more than the budget.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from .._protocol._codec import MAX_FRAME

__all__ = ["BUFFER_BUDGET", "UNRESERVED", "BufferBudget"]

#: Frames up to this size need no reservation.
UNRESERVED: Final = 1 << 18
#: The default budget, in bytes: four maximum frames.
BUFFER_BUDGET: Final = 4 * MAX_FRAME


class _Holder(Protocol):
    reserved: int


class BufferBudget:
    """Reservations of large frames against one limit, and who waits for room."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        #: Connections waiting for room, in the order they asked.
        self.waiting: list[Any] = []

    def reserve(self, holder: _Holder, length: int) -> bool:
        """Reserve ``length`` bytes for ``holder``'s frame; False: it must wait (and is queued)."""
        held = self.held - holder.reserved
        if held + length <= self.limit:
            self.held = held + length
            holder.reserved = length
            return True
        self.waiting.append(holder)
        return False

    def release(self, holder: _Holder) -> list[Any]:
        """Give ``holder``'s bytes back; returns the waiting ones, to try again."""
        self.held -= holder.reserved
        holder.reserved = 0
        waiting, self.waiting = self.waiting, []
        return waiting

    def forget(self, holder: Any) -> None:
        """``holder`` is gone: it waits no more (its bytes go back with ``release``)."""
        if holder in self.waiting:
            self.waiting.remove(holder)
