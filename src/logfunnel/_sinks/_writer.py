"""Text sinks: formatting in the producers, batched writes in the collector.

Formatting a record costs more than moving its bytes. For the common
sinks, the collector asks the producers to do it: an exact stdlib
``StreamHandler``, ``FileHandler``, ``RotatingFileHandler`` or
``TimedRotatingFileHandler`` with a plain ``logging.Formatter`` or a
``logfunnel.JSONFormatter``, and no filters. The collector sends the
formatter's description in the handshake, each producer formats its
records with an identical formatter, and the collector appends the
finished lines in large batches with one flush per batch. Formatting
then spreads over every core, and the collector only moves bytes.

Any other sink (a subclass, a custom formatter, filters, another JSON formatter)
gets a real ``LogRecord`` and its own ``handle()``, as before. Rotation
still calls the sink's own ``doRollover()``, so ``namer`` and ``rotator``
keep working. The size check is made on the bytes written, once per
record, without the stdlib's per-record ``format``, ``seek`` and ``stat``.
"""

from __future__ import annotations

import functools
import io
import logging
import logging.handlers
import os
import time
from collections.abc import Callable
from typing import Any, Final

from .._json import JSONFormatter
from ._guard import LINES_ATTR

__all__ = ["TextWriter", "text_spec"]

_EXACT_TYPES: Final = (
    logging.StreamHandler,
    logging.FileHandler,
    logging.handlers.RotatingFileHandler,
    logging.handlers.TimedRotatingFileHandler,
)
_STYLES: Final = {
    logging.PercentStyle: "%",
    logging.StrFormatStyle: "{",
    logging.StringTemplateStyle: "$",
}
_default_formatter = logging.Formatter()


def text_spec(sink: logging.Handler) -> dict[str, Any] | None:
    """How producers can format for ``sink``, or None if only the sink itself can."""
    if type(sink) not in _EXACT_TYPES or sink.filters:
        return None
    assert isinstance(sink, logging.StreamHandler)
    formatter = sink.formatter or _default_formatter
    if type(formatter) is JSONFormatter:
        return {"json": formatter.options, "terminator": sink.terminator}
    if type(formatter) is not logging.Formatter:
        return None
    style = formatter._style
    style_char = _STYLES.get(type(style))
    if style_char is None or getattr(style, "_defaults", None):
        return None
    if formatter.converter is time.localtime:
        utc = False
    elif formatter.converter is time.gmtime:
        utc = True
    else:
        return None
    return {
        "fmt": style._fmt,
        "datefmt": formatter.datefmt,
        "style": style_char,
        "utc": utc,
        "time_format": formatter.default_time_format,
        "msec_format": formatter.default_msec_format,
        "terminator": sink.terminator,
    }


class TextWriter:
    """Batches producer-formatted records for one sink and writes them under its lock.

    ``pending`` holds encoded text, each item ending with the sink's
    terminator. A ``bytes`` item is one record, which may span lines. A
    ``bytearray`` item is a run of whole single-line records, as line mode
    reads them off the wire (see the collector); only those are ever split,
    at their newlines, and only when a size rotation falls inside them, or
    when a batch has to be written record by record.

    A batch is one write, so one record the stream cannot encode would fail
    all of it, where ``StreamHandler.emit`` loses that record alone. The one
    write is kept only for streams whose failed write is known to have
    written nothing (the stdlib's ``TextIOWrapper``, which encodes a whole
    call before it writes any of it, and ``StringIO``): a batch they refuse
    is written again record by record, each record as ``emit`` writes it,
    so only the records that really fail are lost, each one reported. Any
    other stream gets one write and one flush per record from the start,
    like ``emit``: a write that fails half-way through a batch could
    neither be retried (the written part would be doubled) nor left alone
    (the rest would be lost).
    """

    def __init__(self, sink: logging.StreamHandler[Any]) -> None:
        self.sink = sink
        #: Records waiting for the next flush; appended to by the collector.
        self.pending: list[bytes | bytearray] = []
        #: How many records ``pending`` holds; counted by the collector as it appends.
        self.lines = 0
        #: How many failures this writer handed to the sink's ``handleError``.
        self.errors = 0
        # How batches reach the sink's stream, worked out once per stream (see _route).
        self._route_for: object = None
        self._whole = False
        self._raw: Any = None
        #: How a batch is run: at once by default; the collector routes it
        #: through the sink's guard, which moves a slow sink to its own thread.
        self.submit: Callable[[Callable[[], object], int, int], None] = _run_now

    def flush(self) -> None:
        """Hand what is pending to ``submit``: one write and one flush per batch."""
        if not self.pending:
            return
        # Cleared in place: the collector holds a reference to this list.
        batch = self.pending[:]
        self.pending.clear()
        lines, self.lines = self.lines, 0
        self.submit(functools.partial(self.write, batch), sum(map(len, batch)), lines)

    def write(self, batch: list[bytes | bytearray]) -> None:
        """Write ``batch`` under the sink's lock, rotating between lines; failures go
        to the sink's ``handleError``, never up to the caller."""
        sink = self.sink
        sink.acquire()
        try:
            if isinstance(sink, logging.handlers.RotatingFileHandler):
                self._write_rotating(sink, batch)
            else:
                if isinstance(sink, logging.handlers.TimedRotatingFileHandler):
                    self._roll_by_time(sink)
                self._write(batch)
        except Exception:
            # What may be partly written is unknown here (an OSError under the
            # stream's buffer, a failed rollover): count the whole batch rather
            # than write any of it twice.
            self.errors += 1
            sink.handleError(self._as_record(batch))
        finally:
            sink.release()

    def _stream(self) -> Any:
        sink = self.sink
        if sink.stream is None and isinstance(sink, logging.FileHandler):
            if getattr(sink, "_closed", False):
                raise ValueError(f"sink {sink!r} is closed")
            sink.stream = sink._open()
        return sink.stream

    def _write(self, parts: list[bytes | bytearray]) -> int:
        """Write ``parts``; return the size of the records that failed (0 almost always)."""
        stream = self._stream()
        if stream is not self._route_for:
            self._route(stream)
        if not self._whole:
            return self._write_each(stream, parts)
        data = b"".join(parts)
        raw = self._raw
        if raw is not None and data.isascii():
            # ASCII is the same bytes in the stream's encoding: skip the
            # decode and re-encode through the text layer.
            stream.flush()
            raw.write(data)
        else:
            try:
                stream.write(data.decode("utf-8", "backslashreplace"))
            except UnicodeError:
                # Nothing of it was written (see _route): one record at a time.
                return self._write_each(stream, parts)
        self.sink.flush()
        return 0

    def _write_each(self, stream: Any, parts: list[bytes | bytearray]) -> int:
        """Write the records of ``parts`` as ``StreamHandler.emit`` would: one write and
        one flush each, a failure reported for that record alone. Returns the size of
        the records that failed."""
        write = stream.write
        # What the sink's flush() does, without taking its lock (held) each time.
        flush = getattr(stream, "flush", None) if stream else None
        lost = 0
        for part in parts:
            for record in _split_lines(part):
                try:
                    write(record.decode("utf-8", "backslashreplace"))
                    if flush is not None:
                        flush()
                except RecursionError:  # as emit does: no handleError for that
                    raise
                except Exception:
                    lost += len(record)
                    self.errors += 1
                    self.sink.handleError(self._as_record([record]))
        return lost

    def _route(self, stream: Any) -> None:
        """Choose how batches reach ``stream``: whole, and maybe as bytes, or per record.

        A batch goes in one write only when a write the stream refuses is
        known to have written nothing of it: the C ``TextIOWrapper.write``
        (not overridden) encodes the whole text before it queues any byte,
        so an encoding error leaves the stream as it was; ``StringIO``
        encodes nothing. ASCII may even skip the text layer, but only into a
        stream the ``FileHandler`` opened itself: its newline handling is
        known (none on POSIX) and its encoding is checked to write ASCII
        unchanged. A user's stream (a console) always gets text.
        """
        write = getattr(type(stream), "write", None)
        self._whole = write is _TEXT_WRITE or write is _STRING_WRITE
        self._raw = None
        encoding = getattr(stream, "encoding", None)
        if (
            self._whole
            and isinstance(self.sink, logging.FileHandler)
            and isinstance(stream, io.TextIOWrapper)
            and os.linesep == "\n"
            and encoding
            and _keeps_ascii(encoding)
        ):
            self._raw = stream.buffer
        self._route_for = stream

    def _write_rotating(
        self, sink: logging.handlers.RotatingFileHandler, parts: list[bytes | bytearray]
    ) -> None:
        limit = sink.maxBytes
        if limit <= 0:
            self._write(parts)
            return
        position = self._stream().tell()
        out: list[bytes | bytearray] = []
        for part in parts:
            if position + len(part) < limit:
                out.append(part)
                position += len(part)
                continue
            # The limit falls inside this item: go record by record.
            records = _split_lines(part) if type(part) is bytearray else (part,)
            for record in records:
                size = len(record)
                if position and position + size >= limit and _regular_file(sink.baseFilename):
                    if out:
                        # Records that failed take no room in the file: the
                        # stdlib's size check sees only what was written.
                        position -= self._write(out)
                        out = []
                    if position and position + size >= limit:
                        sink.doRollover()
                        self._stream()
                        position = 0
                out.append(record)
                position += size
        if out:
            self._write(out)

    @staticmethod
    def _roll_by_time(sink: logging.handlers.TimedRotatingFileHandler) -> None:
        if sink.shouldRollover(_PLACEHOLDER):
            sink.doRollover()

    @staticmethod
    def _as_record(parts: list[bytes | bytearray]) -> logging.LogRecord:
        count = sum(part.count(b"\n") if type(part) is bytearray else 1 for part in parts)
        first = _split_lines(parts[0])[0] if parts else b""
        text = first.decode("utf-8", "backslashreplace").rstrip("\r\n")
        more = f" (and {count - 1} more)" if count > 1 else ""
        record = logging.LogRecord(
            "logfunnel", logging.ERROR, __file__, 0, "%s%s", (text, more), None
        )
        record.__dict__[LINES_ATTR] = count
        return record


def _split_lines(part: bytes | bytearray) -> list[bytes | bytearray]:
    """The records of a ``pending`` item: a line run split at its newlines, else itself."""
    if type(part) is not bytearray:
        return [part]
    return [line + b"\n" for line in part.split(b"\n")[:-1]]


@functools.lru_cache(maxsize=16)
def _keeps_ascii(encoding: str) -> bool:
    """Whether ``encoding`` writes every ASCII character as that same byte."""
    probe = "".join(map(chr, range(128)))
    try:
        return probe.encode(encoding) == probe.encode("ascii")
    except (LookupError, UnicodeError):
        return False


_TEXT_WRITE: Final = io.TextIOWrapper.write
_STRING_WRITE: Final = io.StringIO.write


def _run_now(job: Callable[[], object], size: int, lines: int) -> None:
    job()


def _regular_file(path: str) -> bool:
    # The stdlib never rotates something that is not a regular file (bpo-45401).
    return not os.path.exists(path) or os.path.isfile(path)


_PLACEHOLDER = logging.LogRecord("logfunnel", logging.INFO, __file__, 0, "", None, None)
