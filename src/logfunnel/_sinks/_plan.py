"""``SinkPlan``: which sink gets what, decided once when a collector starts.

A collector's sinks fall into two kinds. A plain stdlib file or stream sink
with a plain ``Formatter`` (see ``_writer.text_spec``) gets the lines the
producers formatted, batched by a ``TextWriter``; any other sink gets a
``LogRecord`` and its own ``handle()``. From that follow:

* the formats the producers are asked to format in (one per distinct text
  sink format), and whether they must also send the structured record (a
  record sink, a route or an ``on_record`` callback needs it);
* line mode: when every sink is a text sink of one format, one level and a
  ``"\\n"`` terminator, producers send bare lines and the collector copies
  runs of them (see ``_collector._loop``);
* routes: handlers on the parent's non-root loggers (see ``_routes``). They
  do not turn line mode off: libraries add such handlers at import
  (``distributed`` on its own loggers, for one), and frames for every record
  made such a program log at about a quarter of its line-mode rate (two
  workers into one file: 28,000 against 105,000 records/s). Only the records
  of a route logger (or of one below it) need the structured record, so the
  handshake names the route loggers and producers send just those as frames
  (``routed_lines``); the rest stay bare lines.

Every sink, route handlers included, is guarded (``_guard``): failures are
counted and reported, and a slow sink moves to its own thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from ._guard import Reporter, SinkGuards
from ._routes import Routes
from ._writer import TextWriter, text_spec

__all__ = ["SinkPlan"]


class SinkPlan:
    """The sinks of one collector, and how each record reaches them."""

    def __init__(
        self,
        sinks: Sequence[logging.Handler],
        stats: Any,
        report: Reporter,
        *,
        routes: Routes | None = None,
        on_record: Callable[[logging.LogRecord], None] | None = None,
        overflow: str = "block",
        sink_options: dict[str, float] | None = None,
    ) -> None:
        self.sinks = list(sinks)
        #: The formats producers format in, as ``text_spec`` describes them.
        self.formats: list[dict[str, Any]] = []
        #: Per sink: its writer and format index, or (None, -1) for a record sink.
        self.entries: list[tuple[logging.Handler, TextWriter | None, int]] = []
        for sink in self.sinks:
            spec = text_spec(sink)
            if spec is None:
                self.entries.append((sink, None, -1))
                continue
            if spec not in self.formats:
                self.formats.append(spec)
            assert isinstance(sink, logging.StreamHandler)
            self.entries.append((sink, TextWriter(sink), self.formats.index(spec)))
        self.writers = [writer for _, writer, _ in self.entries if writer is not None]
        #: Text sinks with their writers, for the one-format fast path.
        self.text_sinks = [(sink, w) for sink, w, _ in self.entries if w is not None]
        self.routes = routes if routes else None
        self._on_record = on_record
        # Every record, whatever its logger, must reach some sink as a LogRecord.
        every_record = on_record is not None or any(w is None for _, w, _ in self.entries)
        #: Whether producers must send the structured record with their lines
        #: (in line mode: only the route loggers' records, see ``routed_lines``).
        self.structured = every_record or self.routes is not None
        #: Every sink takes text of one format: a frame needs no decoding past its header.
        self.one_text = len(self.formats) == 1 and not self.structured
        levels = {sink.level for sink in self.sinks}
        #: Line mode's level (the sinks' one level), or None: frames only.
        self.line_level: int | None = None
        if (
            len(self.formats) == 1
            and not every_record
            and overflow == "block"
            and len(levels) == 1
            and self.formats[0]["terminator"] == "\n"
        ):
            self.line_level = levels.pop()
        #: Line mode with routes: a producer sends the records of these loggers (and of
        #: those below them) as frames with the structured record, the others as lines.
        self.routed_lines: list[str] | None = None
        if self.line_level is not None and self.routes is not None:
            self.routed_lines = self.routes.names
        # A route handler that is also a text sink: its pending lines go before a record.
        self._writer_of = {sink: writer for sink, writer in self.text_sinks}
        guarded = self.sinks + [
            h for h in (self.routes.handlers if self.routes else []) if h not in self.sinks
        ]
        self.guards = SinkGuards(guarded, stats, report, overflow=overflow, **(sink_options or {}))
        for writer in self.writers:
            writer.submit = self.guards.guard_of(writer.sink).submit

    def handshake(self, routed_lines: bool = True) -> dict[str, Any]:
        """What producers need to know of the sinks, for the handshake answer.

        With routes in line mode, a producer that does not say it sends the route
        loggers' records as frames (``routed_lines`` False: one older than this
        collector) is answered with frames only: it would send them as lines.
        """
        if self.routed_lines is not None and not routed_lines:
            return {"formats": self.formats, "structured": True, "lines": None}
        answer = {"formats": self.formats, "structured": self.structured, "lines": self.line_level}
        if self.routed_lines is not None:
            answer["routes"] = self.routed_lines
        return answer

    # -- the record path -----------------------------------------------------

    def handle(self, record: logging.LogRecord) -> None:
        """Give ``record`` to every sink whose level accepts it; a failing sink hurts no other."""
        if self.routes is not None and not self._route(record):
            return
        levelno = record.levelno
        for sink, writer, _ in self.entries:
            if levelno >= sink.level:
                if writer is not None and writer.pending:
                    writer.flush()  # keep this sink's order
                _deliver(sink, record)
        if self._on_record is not None:
            self._on_record(record)

    def texts(self, levelno: int, texts: list[bytes], record: logging.LogRecord | None) -> None:
        """A record the producer formatted: text sinks get their text, the others ``record``.

        With routes, ``record`` is None only in line mode, for a record of no route
        logger (the producer sent it without its structured record): it takes no route.
        """
        if self.routes is not None and record is not None and not self._route(record):
            return
        for sink, writer, index in self.entries:
            if levelno < sink.level:
                continue
            if writer is not None:
                writer.pending.append(texts[index])
                writer.lines += 1
            else:
                assert record is not None
                _deliver(sink, record)
        if self._on_record is not None and record is not None:
            self._on_record(record)

    def _route(self, record: logging.LogRecord) -> bool:
        """Hand ``record`` to the handlers of the loggers on its way up, as in the parent;
        True if it propagates as far as the root sinks."""
        assert self.routes is not None
        handlers, reaches_root = self.routes.lookup(record.name)
        levelno = record.levelno
        for handler in handlers:
            if levelno >= handler.level:
                writer = self._writer_of.get(handler)
                if writer is not None and writer.pending:
                    writer.flush()  # keep this sink's order
                _deliver(handler, record)
        if not reaches_root and self._on_record is not None:
            self._on_record(record)
        return reaches_root

    def flush(self) -> None:
        """Write what the text writers hold: one write and flush per sink."""
        for writer in self.writers:
            if writer.pending:
                writer.flush()


def _deliver(sink: logging.Handler, record: logging.LogRecord) -> None:
    try:
        sink.handle(record)
    except Exception:  # a filter raised: handle() has no guard for that
        sink.handleError(record)  # the sink's guard counts and reports it
