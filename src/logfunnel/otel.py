"""OpenTelemetry: a sink that sends every record to an OTLP/HTTP endpoint, as its worker made it.

This is the OpenTelemetry SDK's own way, not a second exporter: the
``LoggingHandler`` of ``opentelemetry-instrumentation-logging`` (the SDK's
own is deprecated since 1.45), a ``BatchLogRecordProcessor`` and the
``opentelemetry-exporter-otlp-proto-http`` exporter. ``OTLPHandler`` is that
handler with three things a sink in a collector needs and one process never
did:

* **who made the record.** The handler leaves out ``process`` and
  ``thread`` (it reserves them), and a resource detector would name the
  collector's process. Every record gets ``process.pid``, ``thread.id``,
  ``thread.name`` and ``host.name`` attributes from the record itself: the
  worker's, also for records of other hosts over TCP.
* **the worker's span.** The handler reads the span current in the thread
  that emits, which in the collector is the collector's. A worker that has
  imported ``opentelemetry.trace`` sends its current span's ids with each
  record (see ``logfunnel._producer._trace``), and they become the OTel
  record's trace context here. A record from a worker outside any span has
  no trace context, never the collector's.
* **losses counted and reported.** The batch processor drops records
  silently when its queue is full, and an export that fails after the
  exporter's retries is only a line in the SDK's own log. Here a record that
  would not fit the queue is dropped before the processor sees it and
  counted, each record handed to the exporter is counted as delivered or
  failed, and what was still queued at ``close()`` counts as lost. New losses
  go to ``handleError`` with their count, so behind a funnel the sink's
  guard counts them and reports them to the other sinks; in one process they
  reach stderr, as any handler's errors do.

``flush()`` waits (at most ``flush_timeout`` seconds) until everything queued
is exported, and ``close()`` flushes, then shuts the exporter down: a funnel's
``stop()`` does both, so the records are at the endpoint when it returns.
Emitting never waits for the network, so an endpoint that is down or slow
does not slow the collector's other sinks.

Importing this module imports OpenTelemetry; ``import logfunnel`` never does.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.resources import Resource

from ._producer._trace import FLAGS_ATTR, SPAN_ID_ATTR, TRACE_ID_ATTR
from ._protocol._codec import ReceivedRecord, record_host
from ._sinks._config import check_otlp_endpoint
from ._sinks._guard import LINES_ATTR

__all__ = ["ExportLoss", "OTLPHandler"]

#: The path of the logs signal under an OTLP/HTTP base URL.
LOGS_PATH: Final = "/v1/logs"
_HOST: Final = socket.gethostname()
# What opentelemetry-instrumentation-logging's record factory calls "sampled".
_SAMPLED_ATTR: Final = "otelTraceSampled"
_TRACE_ATTRS: Final = (TRACE_ID_ATTR, SPAN_ID_ATTR, FLAGS_ATTR, _SAMPLED_ATTR)
# The span of a worker's record logged outside any span: none, not the collector's.
_NO_SPAN: Final = trace.set_span_in_context(trace.INVALID_SPAN, otel_context.Context())
_FLUSH_THREAD: Final = "logfunnel-otel-flush"
# The threads that export: the batch processor's, and flush()'s.
_EXPORT_THREADS: Final = frozenset({"OtelBatchLogRecordProcessor", _FLUSH_THREAD})


class ExportLoss(Exception):
    """Records that did not reach the endpoint (what ``handleError`` is given for them)."""


class OTLPHandler(LoggingHandler):
    """A ``logging.Handler`` sending records to an OTLP/HTTP logs endpoint (see the module).

    ``endpoint`` is the collector's URL: a bare ``http://host:4318`` gets the
    logs path (``/v1/logs``), any other path is used as given; None reads
    ``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT`` as
    the SDK does. ``resource`` adds resource attributes to those of the
    environment (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``).
    ``timeout`` is the exporter's, for one export with its retries;
    ``max_queue_size``, ``max_export_batch_size`` and ``schedule_delay``
    (seconds) are the batch processor's. ``exporter`` replaces the OTLP/HTTP
    exporter (then ``endpoint``, ``headers`` and ``timeout`` are unused).
    ``code_attributes`` adds ``code.file.path``, ``code.function.name`` and
    ``code.line.number``. ``flush_timeout`` bounds how long ``flush()`` waits,
    and ``close()`` twice that: an endpoint that never answers cannot hold a
    funnel's ``stop()`` for longer.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        level: int | str = logging.NOTSET,
        resource: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        max_queue_size: int = 2048,
        max_export_batch_size: int = 512,
        schedule_delay: float = 1.0,
        flush_timeout: float = 30.0,
        code_attributes: bool = True,
        exporter: LogRecordExporter | None = None,
    ) -> None:
        if exporter is None:
            exporter = OTLPLogExporter(
                endpoint=_logs_url(endpoint), headers=headers, timeout=timeout
            )
        if max_queue_size < 1 or max_export_batch_size < 1:
            raise ValueError("max_queue_size and max_export_batch_size must be 1 or more")
        #: Where the records go, as the handler's report names it.
        self.endpoint: str = endpoint or str(
            getattr(exporter, "_endpoint", type(exporter).__name__)
        )
        self.flush_timeout = flush_timeout
        self._counts = _Counts(exporter, max_queue_size)
        batch = BatchLogRecordProcessor(
            self._counts,
            schedule_delay_millis=schedule_delay * 1000,
            max_export_batch_size=min(max_export_batch_size, max_queue_size),
            max_queue_size=max_queue_size,
        )
        self._gate = _Gate(batch, self._counts)
        self.provider = LoggerProvider(
            resource=Resource.create(dict(resource or {})), shutdown_on_exit=False
        )
        self.provider.add_log_record_processor(self._gate)
        super().__init__(
            level=logging._checkLevel(level),  # type: ignore[attr-defined]
            logger_provider=self.provider,
            log_code_attributes=code_attributes,
        )
        self._closed = False

    # -- counts ------------------------------------------------------------

    @property
    def delivered(self) -> int:
        """Records the endpoint accepted."""
        return self._counts.succeeded

    @property
    def dropped(self) -> int:
        """Records dropped because the export queue was full."""
        return self._counts.dropped

    @property
    def failed(self) -> int:
        """Records in exports that failed after the exporter's retries."""
        return self._counts.failed

    @property
    def lost(self) -> int:
        """Records that did not reach the endpoint: dropped, failed, and, after
        ``close()``, those it did not export."""
        return self._counts.lost(final=self._closed)

    # -- the record path ---------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        """Send ``record`` with its worker's trace context; report losses seen since the last."""
        if _from_export(record):
            return
        context = _trace_context(record)
        token = None if context is None else otel_context.attach(context)
        try:
            super().emit(record)
        finally:
            if token is not None:
                otel_context.detach(token)
        if self._counts.unreported(final=False):
            self._report_losses(final=False)

    def _get_attributes(self, record: logging.LogRecord) -> tuple[dict[str, Any], str | None]:
        attributes, event_name = super()._get_attributes(record)
        for name in _TRACE_ATTRS:  # they are the record's trace context
            attributes.pop(name, None)
        attributes["process.pid"] = record.process
        attributes["thread.id"] = record.thread
        attributes["thread.name"] = record.threadName
        attributes["host.name"] = record_host(record) or _HOST
        return attributes, event_name

    # -- flush and close ---------------------------------------------------

    def flush(self) -> None:
        """Export what is queued, waiting at most ``flush_timeout`` seconds."""
        if self._closed:
            return
        self._force_flush()
        self._report_losses(final=False)

    def _force_flush(self) -> bool:
        return self._wait_for(self.provider.force_flush)

    def _wait_for(self, step: Callable[[], object]) -> bool:
        """Run ``step`` in a thread of its own, waiting at most ``flush_timeout`` seconds.

        A thread, as the SDK's handler flushes: an export that logs must not wait
        for this handler's lock, which flush() may hold. And a bound: an endpoint
        that accepts and never answers holds an export for the exporter's timeout.
        """
        done = threading.Event()

        def run() -> None:
            try:
                step()
            finally:
                done.set()

        threading.Thread(target=run, name=_FLUSH_THREAD, daemon=True).start()
        return done.wait(self.flush_timeout)

    def close(self) -> None:
        """Flush, shut the exporter down and report what was lost. Safe to call twice.

        Takes at most twice ``flush_timeout``: what is not exported by then counts as lost.
        """
        with self.lock:  # type: ignore[union-attr]
            if self._closed:
                return
            self._closed = True
        try:
            if not self._force_flush():
                # Stuck in retries: stop them; what is left counts as lost.
                self._counts.exporter.shutdown()  # type: ignore[no-untyped-call]
            self._wait_for(self.provider.shutdown)
        finally:
            self._report_losses(final=True)
            super().close()

    def _report_losses(self, *, final: bool) -> None:
        new, text = self._counts.take_report(self.endpoint, final=final)
        if not new:
            return
        record = logging.LogRecord(
            "logfunnel.otel", logging.ERROR, __file__, 0, "%s", (text,), None
        )
        record.__dict__[LINES_ATTR] = new  # the guard counts each lost record
        try:
            raise ExportLoss(text)
        except ExportLoss:
            self.handleError(record)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.endpoint} ({logging.getLevelName(self.level)})>"


def _logs_url(endpoint: str | None) -> str | None:
    """``endpoint`` with the logs path if it has no path of its own."""
    if endpoint is None:
        return None
    check_otlp_endpoint(endpoint)
    if urlsplit(endpoint).path in ("", "/"):
        return endpoint.rstrip("/") + LOGS_PATH
    return endpoint


def _from_export(record: logging.LogRecord) -> bool:
    """Whether ``record`` was logged by an export of this process (urllib3's connection
    notes, the exporter's retries): exporting it would log again, without end. In one
    process the SDK marks its exports' context; behind a funnel the record comes back
    from the collector's own process, logged by one of the exporting threads. Other
    sinks still get it."""
    if not is_instrumentation_enabled():
        return True
    return (
        isinstance(record, ReceivedRecord)
        and record.process == os.getpid()
        and record.threadName in _EXPORT_THREADS
    )


def _trace_context(record: logging.LogRecord) -> otel_context.Context | None:
    """The context to emit ``record`` in: its worker's span, if it carries one; no span
    for another worker's record; None (the current one) for a record made here."""
    values = record.__dict__
    trace_id, span_id = values.get(TRACE_ID_ATTR), values.get(SPAN_ID_ATTR)
    if isinstance(trace_id, str) and isinstance(span_id, str):
        flags = values.get(FLAGS_ATTR)
        if not isinstance(flags, int):
            flags = trace.TraceFlags.SAMPLED if values.get(_SAMPLED_ATTR) is True else 0
        try:
            span = trace.SpanContext(
                int(trace_id, 16),
                int(span_id, 16),
                is_remote=True,
                trace_flags=trace.TraceFlags(flags & 0xFF),
            )
        except ValueError:
            span = trace.INVALID_SPAN_CONTEXT
        if span.is_valid:
            return trace.set_span_in_context(trace.NonRecordingSpan(span), otel_context.Context())
    return _NO_SPAN if isinstance(record, ReceivedRecord) else None


class _Counts(LogRecordExporter):
    """The exporter, counting what it is handed and how each export ended; and the
    tallies of the whole pipeline, under one lock (the processor's thread exports,
    ``force_flush`` exports in its caller's)."""

    def __init__(self, exporter: LogRecordExporter, max_queue_size: int) -> None:
        self.exporter = exporter
        self.max_queue_size = max_queue_size
        self.lock = threading.Lock()
        self.accepted = 0  # given to the batch processor
        self.dropped = 0  # refused: the processor's queue was full
        self.handed = 0  # given to the exporter
        self.succeeded = 0
        self.failed = 0
        self.reported = 0

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        count = len(batch)
        with self.lock:
            self.handed += count
        result = LogRecordExportResult.FAILURE
        try:
            result = self.exporter.export(batch)
        finally:
            with self.lock:
                if result is LogRecordExportResult.SUCCESS:
                    self.succeeded += count
                else:
                    self.failed += count
        return result

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.exporter.shutdown()  # type: ignore[no-untyped-call]

    def admit(self) -> bool:
        """Count a record for the processor; False if its queue has no room (then it is
        counted as dropped). What was accepted and not yet handed to the exporter bounds
        the queue's length, so the processor itself never drops."""
        with self.lock:
            if self.accepted - self.handed >= self.max_queue_size:
                self.dropped += 1
                return False
            self.accepted += 1
            return True

    def lost(self, *, final: bool) -> int:
        with self.lock:
            return self._lost(final)

    def _lost(self, final: bool) -> int:
        if final:  # what was not delivered by now never will be
            return self.dropped + self.accepted - self.succeeded
        return self.dropped + self.failed

    def unreported(self, *, final: bool) -> bool:
        return self.dropped + self.failed > self.reported or final

    def take_report(self, endpoint: str, *, final: bool) -> tuple[int, str]:
        """How many losses are new since the last report, and the text saying so."""
        with self.lock:
            lost = self._lost(final)
            new = lost - self.reported
            if new <= 0:
                return 0, ""
            self.reported = lost
            text = (
                f"{new} record(s) did not reach the OTLP endpoint {endpoint} "
                f"({lost} in all: {self.dropped} dropped with the export queue full, "
                f"{self.failed} in failed exports"
            )
            if final:
                text += f", {lost - self.dropped - self.failed} not exported at close"
            return new, text + ")"


class _Gate(LogRecordProcessor):
    """The batch processor behind a count (see ``_Counts.admit``)."""

    def __init__(self, batch: BatchLogRecordProcessor, counts: _Counts) -> None:
        self.batch = batch
        self.counts = counts

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        if self.counts.admit():
            self.batch.on_emit(log_record)

    def shutdown(self) -> None:
        self.batch.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.batch.force_flush(timeout_millis))
