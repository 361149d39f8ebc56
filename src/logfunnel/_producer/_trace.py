"""The worker's trace context on its records, once the worker uses OpenTelemetry.

In one process an OpenTelemetry log handler reads the span that is current
in the thread that logs. Behind a funnel the sink runs in the collector,
where that span is not current, so the worker has to send it with the
record. It does so as three ``extra`` attributes, the ids named as
``opentelemetry-instrumentation-logging``'s record factory names them (a
worker running that instrumentation sends the same ids under the same
names, and sinks that show extras show them):

* ``otelTraceID``: the trace id, 32 hex digits;
* ``otelSpanID``: the span id, 16 hex digits;
* ``otelTraceFlags``: the W3C trace flags, an int (sampled, random), all of
  them: the record factory's ``otelTraceSampled`` says only the first.

They are added only to records logged inside a valid span. A worker that
never imports ``opentelemetry.trace`` pays nothing: the handler tests one
global (see ``_handler``), and nothing here runs until that import.
"""

from __future__ import annotations

# typing is for the type checker only: every worker may import this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from logging import LogRecord
    from types import ModuleType
    from typing import Final

__all__ = ["FLAGS_ATTR", "SPAN_ID_ATTR", "TRACE_ID_ATTR", "trace_adder"]

TRACE_ID_ATTR: Final = "otelTraceID"
SPAN_ID_ATTR: Final = "otelSpanID"
FLAGS_ATTR: Final = "otelTraceFlags"


def trace_adder(trace: ModuleType) -> Callable[[LogRecord], None]:
    """What puts the current span's ids on a record, for the imported ``opentelemetry.trace``."""
    get_current_span = trace.get_current_span

    def add_trace(record: LogRecord) -> None:
        context = get_current_span().get_span_context()
        if context.is_valid:
            record.__dict__[TRACE_ID_ATTR] = format(context.trace_id, "032x")
            record.__dict__[SPAN_ID_ATTR] = format(context.span_id, "016x")
            record.__dict__[FLAGS_ATTR] = int(context.trace_flags)

    return add_trace
