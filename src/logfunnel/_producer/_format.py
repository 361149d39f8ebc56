"""Formatting in the producer: the sink's own formatter, rebuilt from its description.

The collector describes each plain text sink's formatter in its handshake
answer (see ``_sinks._writer.text_spec``); the producer formats its records
with an identical ``ProducerFormatter`` (or ``JSONFormatter``), so formatting
is spread over every core and the collector only moves bytes.
"""

from __future__ import annotations

import logging
import time

from .._protocol._codec import safe_message

# typing is for the type checker only: every worker imports this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .._json import JSONFormatter
    from .._protocol._loggers import UnderRoutes

__all__ = ["ProducerFormatter", "format_text", "producer_formatter"]


def producer_formatter(spec: dict[str, Any]) -> ProducerFormatter | JSONFormatter:
    """The formatter a ``text_spec`` describes: a ``JSONFormatter`` (imported only for
    a JSON sink) or a ``ProducerFormatter``."""
    if "json" in spec:
        from .._json import JSONFormatter

        return JSONFormatter.from_options(spec["json"])
    return ProducerFormatter(spec)


class ProducerFormatter(logging.Formatter):
    """The sink's formatter, rebuilt in a producer from its ``text_spec``.

    It formats exactly like ``logging.Formatter``. ``time.strftime`` has
    one-second resolution, so its result is cached per second; the
    milliseconds are added afterwards as the stdlib does. A plain record
    (no exception, no stack) under a ``%``-style format is formatted in one
    step, without the stdlib's chain of method calls, reusing the last
    asctime while records come within one millisecond.

    The two caches have a key each, and only their own code writes it: a
    record with an exception or a stack goes through the stdlib's
    ``format`` and so through ``formatTime`` alone, and that must not make
    the next plain record take an asctime made for another second.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec["fmt"], spec["datefmt"], spec["style"])
        self.default_time_format = spec["time_format"]
        self.default_msec_format = spec["msec_format"]
        if spec["utc"]:
            self.converter = time.gmtime
        #: What the sink writes after each record; the producer appends it.
        self.terminator: str = spec["terminator"]
        self._uses_time = self._style.usesTime()
        self._percent = spec["style"] == "%"
        # formatTime's cache: the strftime text of one second. None: nothing
        # cached (a time before 1970, where int() and the converter's floor differ).
        self._second: int | None = None
        self._stamp = ""
        # format's cache: the last asctime made, and the second (as
        # formatTime keyed it) and millisecond it is for: a busy producer
        # logs many records within one millisecond.
        self._asctime = ""
        self._asctime_second: int | None = None
        self._msecs = -1.0
        #: In line mode beside routes (see ``_sinks._plan``): which loggers' records
        #: go as frames with the structured record. None: every record may be a line.
        #: Here, not on the handler: the line formatter is what line mode reads.
        self.routes: UnderRoutes | None = None

    def format(self, record: logging.LogRecord) -> str:
        if not self._percent or record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)
        record.message = record.getMessage()
        if self._uses_time:
            msecs = record.msecs
            if msecs != self._msecs or int(record.created) != self._asctime_second:
                self._asctime = self.formatTime(record, self.datefmt)
                self._msecs = msecs
                self._asctime_second = self._second
            record.asctime = self._asctime
        try:
            return self._fmt % record.__dict__  # type: ignore[operator]
        except KeyError:
            return super().format(record)  # raises the stdlib's own error for it

    def usesTime(self) -> bool:
        return self._uses_time

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        created = record.created
        second = int(created)
        if second != self._second:
            self._stamp = time.strftime(
                datefmt or self.default_time_format, self.converter(created)
            )
            self._second = second if created >= 0 else None
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
