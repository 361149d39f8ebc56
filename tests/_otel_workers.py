"""What the OpenTelemetry tests' workers log, and an OTLP/HTTP receiver to catch it.

The workers live in an importable module so that spawn and forkserver children
find them by name, and so that a test can log the very same records in its own
process, which is what the funnel's OTLP output must match. The receiver is a
real HTTP server that decodes each request with the official protobuf classes
(``opentelemetry-proto``), as a collector would.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("otelworker")

#: The extra fields of the first record: one of each kind JSON and OTLP both hold.
EXTRA: dict[str, Any] = {
    "user": "ada",
    "attempt": 3,
    "ratio": 0.5,
    "ok": True,
    "tags": ["a", "b"],
}


def log_records(tag: str) -> dict[str, Any]:
    """Log an INFO with extras, an ERROR with an exception and a WARNING inside a span of
    the SDK's tracer; return who logged them and the span's ids."""
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("otelworker")
    log.info("plain %s %d", tag, 1, extra=EXTRA)
    try:
        raise ValueError(f"bad value {tag}")
    except ValueError:
        log.exception("failed %s", tag)
    with tracer.start_as_current_span("work") as span:
        log.warning("in span %s", tag)
        context = span.get_span_context()
    log.info("after span %s", tag)
    return {
        "pid": os.getpid(),
        "thread": threading.get_ident(),
        "thread_name": threading.current_thread().name,
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
        "flags": int(context.trace_flags),
    }


def log_many(count: int) -> int:
    """Log ``count`` numbered INFO records; return this process's pid."""
    for n in range(count):
        log.info("record %d", n)
    return os.getpid()


def log_without_opentelemetry() -> dict[str, bool]:
    """Log one record; say whether OpenTelemetry got imported and the trace hook set."""
    from logfunnel._producer import _handler

    log.info("no opentelemetry here")
    return {
        "imported": "opentelemetry.trace" in sys.modules,
        "hook": _handler._add_trace is not None,
    }


# -- the receiver --------------------------------------------------------------


def _value(any_value: Any) -> Any:
    """An OTLP ``AnyValue`` as plain Python."""
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    value = getattr(any_value, kind)
    if kind == "array_value":
        return [_value(v) for v in value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.values}
    return value


class Receiver:
    """An OTLP/HTTP logs endpoint on 127.0.0.1 that keeps every record it accepts.

    The first ``refuse`` requests get ``503 Service Unavailable`` (with
    ``Retry-After: 0``, so the exporter retries at once); each request is
    counted, and a condition tells waiters when anything arrives.
    """

    def __init__(self, refuse: int = 0) -> None:
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
            ExportLogsServiceRequest,
            ExportLogsServiceResponse,
        )

        self.refuse = refuse
        self.requests = 0
        self.refused = 0
        self.records: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.changed:
                    receiver.requests += 1
                    refuse = receiver.refused < receiver.refuse
                    if refuse:
                        receiver.refused += 1
                    receiver.changed.notify_all()
                if refuse:
                    self.send_response(503)
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                request = ExportLogsServiceRequest()
                request.ParseFromString(body)
                got = list(receiver._decode(request))
                answer = ExportLogsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                with receiver.changed:
                    receiver.records.extend(got)
                    receiver.changed.notify_all()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # not into the test's logging

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @staticmethod
    def _decode(request: Any) -> Any:
        for resource_logs in request.resource_logs:
            resource = {kv.key: _value(kv.value) for kv in resource_logs.resource.attributes}
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    yield {
                        "scope": scope_logs.scope.name,
                        "resource": resource,
                        "time": record.time_unix_nano,
                        "severity_text": record.severity_text,
                        "severity_number": record.severity_number,
                        "body": _value(record.body),
                        "attributes": {kv.key: _value(kv.value) for kv in record.attributes},
                        "trace_id": record.trace_id.hex(),
                        "span_id": record.span_id.hex(),
                        "flags": record.flags,
                    }

    def wait_for(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` records have been accepted."""
        with self.changed:
            return self.changed.wait_for(lambda: len(self.records) >= count, timeout)

    def wait_requests(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` requests (accepted or refused) have come."""
        with self.changed:
            return self.changed.wait_for(lambda: self.requests >= count, timeout)

    def bodies(self) -> list[str]:
        with self.changed:
            return [r["body"] for r in self.records]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
