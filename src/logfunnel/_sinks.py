"""Text sinks: formatting in the producers, batched writes in the collector.

Formatting a record costs more than moving its bytes. For the common
sinks, the collector asks the producers to do it: an exact stdlib
``StreamHandler``, ``FileHandler``, ``RotatingFileHandler`` or
``TimedRotatingFileHandler`` with a plain ``logging.Formatter`` and no
filters. The collector sends the formatter's description in the handshake,
each producer formats its records with an identical formatter, and the
collector appends the finished lines in large batches with one flush per
batch. Formatting then spreads over every core, and the collector only
moves bytes.

Any other sink (a subclass, a custom formatter, filters, a JSON handler)
gets a real ``LogRecord`` and its own ``handle()``, as before. Rotation
still calls the sink's own ``doRollover()``, so ``namer`` and ``rotator``
keep working. The size check is made on the bytes written, once per
record, without the stdlib's per-record ``format``, ``seek`` and ``stat``.
"""

from __future__ import annotations

import functools
import logging
import logging.handlers
import os
import time
from collections.abc import Callable
from typing import Any, Final

from ._codec import safe_message
from ._sinkguard import LINES_ATTR

__all__ = ["ProducerFormatter", "TextWriter", "format_text", "text_spec"]

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
    formatter = sink.formatter or _default_formatter
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
    }


class ProducerFormatter(logging.Formatter):
    """The sink's formatter, rebuilt in a producer from its ``text_spec``.

    It formats exactly like ``logging.Formatter``. ``time.strftime`` has
    one-second resolution, so its result is cached per second; the
    milliseconds are added afterwards as the stdlib does.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec["fmt"], spec["datefmt"], spec["style"])
        self.default_time_format = spec["time_format"]
        self.default_msec_format = spec["msec_format"]
        if spec["utc"]:
            self.converter = time.gmtime
        self._uses_time = self._style.usesTime()
        self._second = -1
        self._stamp = ""

    def usesTime(self) -> bool:
        return self._uses_time

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime(
                datefmt or self.default_time_format, self.converter(record.created)
            )
            self._second = second
        if datefmt or not self.default_msec_format:
            return self._stamp
        return self.default_msec_format % (self._stamp, record.msecs)


def format_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """``formatter.format(record)``, or a readable line when user code makes that fail."""
    try:
        return formatter.format(record)
    except Exception as exc:
        clone = logging.makeLogRecord(record.__dict__)
        clone.msg, clone.args = safe_message(record), None
        try:
            return formatter.format(clone)
        except Exception:
            return f"{clone.msg} [logfunnel: the sink's format failed: {type(exc).__name__}: {exc}]"


class TextWriter:
    """Batches producer-formatted lines for one sink and writes them under its lock."""

    def __init__(self, sink: logging.StreamHandler[Any]) -> None:
        self.sink = sink
        #: Lines waiting for the next flush; appended to by the collector.
        self.pending: list[bytes] = []
        self.terminator = sink.terminator.encode("utf-8")
        self.errors = 0
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
        self.submit(functools.partial(self.write, batch), sum(map(len, batch)), len(batch))

    def write(self, batch: list[bytes]) -> None:
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

    def _write(self, parts: list[bytes]) -> None:
        term = self.terminator
        data = term.join(parts) + term
        self._stream().write(data.decode("utf-8", "backslashreplace"))
        self.sink.flush()

    def _write_rotating(
        self, sink: logging.handlers.RotatingFileHandler, parts: list[bytes]
    ) -> None:
        limit = sink.maxBytes
        if limit <= 0:
            self._write(parts)
            return
        stream = self._stream()
        position = stream.tell()
        term_size = len(self.terminator)
        start = 0
        for index, part in enumerate(parts):
            size = len(part) + term_size
            if position and position + size >= limit and _regular_file(sink.baseFilename):
                if index > start:
                    self._write(parts[start:index])
                sink.doRollover()
                self._stream()
                position = 0
                start = index
            position += size
        self._write(parts[start:])

    @staticmethod
    def _roll_by_time(sink: logging.handlers.TimedRotatingFileHandler) -> None:
        if sink.shouldRollover(_PLACEHOLDER):
            sink.doRollover()

    @staticmethod
    def _as_record(parts: list[bytes]) -> logging.LogRecord:
        text = parts[0].decode("utf-8", "backslashreplace") if parts else ""
        more = f" (and {len(parts) - 1} more)" if len(parts) > 1 else ""
        record = logging.LogRecord(
            "logfunnel", logging.ERROR, __file__, 0, "%s%s", (text, more), None
        )
        record.__dict__[LINES_ATTR] = len(parts)
        return record


def _run_now(job: Callable[[], object], size: int, lines: int) -> None:
    job()


def _regular_file(path: str) -> bool:
    # The stdlib never rotates something that is not a regular file (bpo-45401).
    return not os.path.exists(path) or os.path.isfile(path)


_PLACEHOLDER = logging.LogRecord("logfunnel", logging.INFO, __file__, 0, "", None, None)
