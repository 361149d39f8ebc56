"""Sequence tracking: telling a gap from a quiet producer.

Every producer stream (a handler in a process: host, pid, start time and
stream number) numbers its records. Frames carry their number; a line counts
as the next one. A stream that reconnects says in its hello where its count
stands, so records sent but never received are seen there too (in line mode,
only there). A gap or a number going backwards is reported, not hidden.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

__all__ = ["SEQ_MEMORY", "Sequences", "Stream"]

#: How many streams' next numbers are remembered across reconnects.
SEQ_MEMORY: Final = 4096

#: A producer stream: host, pid, process start time, handler number.
Stream = tuple[str, int, float, int]


class Sequences:
    """Where each stream's count stands; reports gaps through ``report``."""

    def __init__(self, stats: Any, report: Callable[..., None]) -> None:
        self._next: dict[Stream, int] = {}
        self._stats = stats
        self._report = report

    def start(self, stream: Stream, announced: int, label: str) -> int:
        """A stream (re)connects and says ``announced`` is its next number: the one to expect."""
        if stream not in self._next and len(self._next) >= SEQ_MEMORY:
            # Forget the stream seen longest ago, so a stream of short-lived
            # producers cannot grow this without bound.
            del self._next[next(iter(self._next))]
        expected = self._next.get(stream, announced)
        if announced != expected:
            self.gap(label, expected, announced)
        return announced

    def resume(self, stream: Stream, announced: int, label: str) -> int:
        """An acknowledging stream (re)connects and resends from ``announced``: where to resume.

        Records it resends that were written already are skipped: it resumes
        at the next number this collector expects. Only numbers it never
        sent here and says were acknowledged (by another collector, or
        forgotten here) are a gap.
        """
        known = self._next.get(stream)
        if known is None or announced > known:
            if known is not None:
                self.gap(label, known, announced)
            return announced
        return known

    def end(self, stream: Stream, expected: int) -> None:
        """A stream's connection ended with ``expected`` as its next number."""
        self._next[stream] = expected
        if len(self._next) > SEQ_MEMORY:
            del self._next[next(iter(self._next))]

    def gap(self, label: str, expected: int, seq: int) -> None:
        """``seq`` came where ``expected`` was due: count and report it."""
        self._stats.gaps += 1
        if seq > expected:
            self._stats.missing_records += seq - expected
            self._report(
                logging.WARNING,
                "logfunnel: %d record(s) from %s never arrived (sequence %d to %d)",
                seq - expected,
                label,
                expected,
                seq - 1,
            )
        else:
            self._report(
                logging.WARNING,
                "logfunnel: %s sent sequence %d after %d (out of order or repeated)",
                label,
                seq,
                expected - 1,
            )
