"""OpenTelemetry as a sink: every worker's record reaches an OTLP/HTTP endpoint once, as in
one process, with the worker's pid, host, thread and span; nothing the exporter retries
is lost, stop() flushes, and an endpoint that is down costs the other sinks nothing.

The endpoint is a real HTTP server (``_otel_workers.Receiver``) decoding each request
with the official ``opentelemetry-proto`` classes; the sink is the real SDK pipeline.
"""

from __future__ import annotations

import inspect
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import _otel_workers as ow
import pytest
from _support import JOIN_TIMEOUT, Records

import logfunnel

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.proto")


def OTLPHandler(url: str, **options: Any) -> Any:
    """``logfunnel.otel.OTLPHandler``, imported inside a test: importing OpenTelemetry's
    logging instrumentation puts a handler on one of its loggers, which the test's
    logger restoration can only take away if the import happens inside a test."""
    from logfunnel.otel import OTLPHandler as handler_class

    return handler_class(url, **options)


#: The attributes whose values name the process or thread that logged.
WHO = {"process.pid", "thread.id"}


@pytest.fixture
def receiver() -> Iterator[ow.Receiver]:
    r = ow.Receiver()
    yield r
    r.close()


def otlp(url: str, **options: Any) -> Any:
    """The sink under test, taking the workers' logger only (not the test's own records)."""
    options.setdefault("schedule_delay", 0.05)
    handler = OTLPHandler(url, **options)
    handler.addFilter(logging.Filter("otelworker"))
    return handler


def line_of(call: str) -> int:
    """The line of ``_otel_workers.log_records`` that holds ``call``."""
    lines, first = inspect.getsourcelines(ow.log_records)
    (found,) = [first + n for n, line in enumerate(lines) if call in line]
    return found


def by_body(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The received records by body; a body received twice fails the test."""
    bodies = [r["body"] for r in records]
    assert sorted(bodies) == sorted(set(bodies)), "a record arrived twice"
    return {r["body"]: r for r in records}


class TestWorkerRecords:
    def test_each_record_arrives_once_as_its_worker_made_it(
        self, start_method: str, receiver: ow.Receiver
    ) -> None:
        """Severity, body, code.*, exception.*, extra fields, the worker's pid, host and
        thread, and inside a span the worker's trace and span ids, for every record of
        every worker, exactly once."""
        sink = otlp(receiver.url)
        with (
            logfunnel.Funnel(handlers=[sink]) as funnel,
            funnel.context(start_method).Pool(2) as pool,
        ):
            who = pool.map(ow.log_records, ["a", "b"])
        got = by_body(receiver.records)
        assert len(receiver.records) == 8
        for tag, worker in zip("ab", who, strict=True):
            assert worker["pid"] != os.getpid()
            plain, failed = got[f"plain {tag} 1"], got[f"failed {tag}"]
            in_span, after = got[f"in span {tag}"], got[f"after span {tag}"]
            for record, call in (
                (plain, 'log.info("plain'),
                (failed, 'log.exception("failed'),
                (in_span, 'log.warning("in span'),
                (after, 'log.info("after span'),
            ):
                attrs = record["attributes"]
                assert record["scope"] == "otelworker"
                assert attrs["process.pid"] == worker["pid"]
                assert attrs["thread.id"] == worker["thread"]
                assert attrs["thread.name"] == worker["thread_name"]
                assert attrs["host.name"] == socket.gethostname()
                assert attrs["code.file.path"] == ow.__file__
                assert attrs["code.function.name"] == "log_records"
                assert attrs["code.line.number"] == line_of(call)
            assert (plain["severity_text"], plain["severity_number"]) == ("INFO", 9)
            assert {k: plain["attributes"][k] for k in ow.EXTRA} == ow.EXTRA
            assert (failed["severity_text"], failed["severity_number"]) == ("ERROR", 17)
            assert failed["attributes"]["exception.type"] == "ValueError"
            assert failed["attributes"]["exception.message"] == f"bad value {tag}"
            stack = failed["attributes"]["exception.stacktrace"]
            assert stack.startswith("Traceback (most recent call last):\n")
            assert stack.endswith(f"ValueError: bad value {tag}\n")
            assert 'raise ValueError(f"bad value {tag}")' in stack
            assert (in_span["severity_text"], in_span["severity_number"]) == ("WARN", 13)
            assert (in_span["trace_id"], in_span["span_id"]) == (
                worker["trace_id"],
                worker["span_id"],
            )
            assert in_span["flags"] & 0xFF == worker["flags"]
            # Outside the span: no trace context, and none of the trace attributes.
            for record in (plain, failed, after):
                assert (record["trace_id"], record["span_id"]) == ("", "")
            for record in (plain, failed, in_span, after):
                assert not {"otelTraceID", "otelSpanID", "otelTraceFlags"} & set(
                    record["attributes"]
                )
        assert sink.lost == 0

    def test_the_host_is_the_producers(self, receiver: ow.Receiver) -> None:
        """A record from a producer on another host names that host, not the collector's."""
        from logfunnel._protocol._codec import decode_record, encode_record, make_record

        sent = logging.LogRecord("otelworker", logging.INFO, __file__, 1, "from afar", None, None)
        received = make_record(decode_record(encode_record(sent, 0)[5:])[1], "elsewhere")
        sink = otlp(receiver.url)
        sink.handle(received)
        sink.close()
        assert [r["attributes"]["host.name"] for r in receiver.records] == ["elsewhere"]

    def test_a_workers_record_never_takes_the_collectors_span(self, receiver: ow.Receiver) -> None:
        """A worker's record logged outside any span has no trace context, even where the
        sink runs inside a span of the collector's process; one that carries its
        worker's span keeps that one."""
        from opentelemetry.sdk.trace import TracerProvider

        from logfunnel._protocol._codec import decode_record, encode_record, make_record

        def received(message: str, **extra: Any) -> logging.LogRecord:
            sent = logging.LogRecord("otelworker", logging.INFO, __file__, 1, message, None, None)
            sent.__dict__.update(extra)
            return make_record(decode_record(encode_record(sent, 0)[5:])[1], "h")

        worker_span = {"otelTraceID": "ab" * 16, "otelSpanID": "cd" * 8, "otelTraceFlags": 1}
        sink = otlp(receiver.url)
        tracer = TracerProvider().get_tracer("collector")
        with tracer.start_as_current_span("collector's own"):
            sink.handle(received("no span"))
            sink.handle(received("worker span", **worker_span))
        sink.close()
        got = {r["body"]: (r["trace_id"], r["span_id"]) for r in receiver.records}
        assert got == {"no span": ("", ""), "worker span": ("ab" * 16, "cd" * 8)}


class TestOneProcess:
    def test_the_same_record_as_in_one_process(
        self, start_method: str, receiver: ow.Receiver
    ) -> None:
        """The same handler gives the same record for the same logging calls in one
        process and behind the funnel: same keys, same values but the pid and thread id."""
        alone = ow.Receiver()
        try:
            root = logging.getLogger()
            here = otlp(alone.url)
            root.addHandler(here)
            try:
                ow.log_records("same")
            finally:
                root.removeHandler(here)
                here.close()
            sink = otlp(receiver.url)
            with (
                logfunnel.Funnel(handlers=[sink]) as funnel,
                funnel.context(start_method).Pool(1) as pool,
            ):
                pool.apply(ow.log_records, ("same",))
            one, funneled = by_body(alone.records), by_body(receiver.records)
        finally:
            alone.close()
        assert len(one) == 4
        assert one.keys() == funneled.keys()
        for body, expected in one.items():
            got = funneled[body]
            assert got["attributes"].keys() == expected["attributes"].keys()
            for key in expected["attributes"].keys() - WHO:
                assert got["attributes"][key] == expected["attributes"][key], key
            for key in ("scope", "severity_text", "severity_number", "flags"):
                assert got[key] == expected[key], key
            assert bool(got["trace_id"]) == bool(expected["trace_id"])
            assert got["resource"].keys() == expected["resource"].keys()


class TestOwnLogs:
    def test_the_exports_own_logs_are_not_exported(self, receiver: ow.Receiver) -> None:
        """What the export logs about itself (urllib3's connections) reaches the other
        sinks but is not exported again: exporting it would log again, without end."""
        records = Records()
        sink = OTLPHandler(receiver.url, schedule_delay=0.05)
        with logfunnel.Funnel(handlers=[records, sink]):
            logging.getLogger("app").info("one")
            assert receiver.wait_for(1, JOIN_TIMEOUT)
            logging.getLogger("app").info("two")
        assert any(r.name.startswith("urllib3") for r in records.records)
        assert sorted(r["scope"] for r in receiver.records) == ["app", "app"]

    def test_in_one_process_too(self, receiver: ow.Receiver) -> None:
        """The same holds for the handler on the root logger of one process."""
        root = logging.getLogger()
        sink = OTLPHandler(receiver.url, schedule_delay=0.05)
        root.addHandler(sink)
        try:
            logging.getLogger("app").info("one")
            assert receiver.wait_for(1, JOIN_TIMEOUT)
            logging.getLogger("app").info("two")
        finally:
            root.removeHandler(sink)
            sink.close()
        assert sorted(r["scope"] for r in receiver.records) == ["app", "app"]


class TestDelivery:
    def test_a_503_period_loses_nothing_the_exporter_retries(self, start_method: str) -> None:
        """An endpoint that answers 503 to its first requests gets every record once the
        exporter retries."""
        receiver = ow.Receiver(refuse=2)
        try:
            sink = otlp(receiver.url)
            with (
                logfunnel.Funnel(handlers=[sink]) as funnel,
                funnel.context(start_method).Pool(1) as pool,
            ):
                pool.apply(ow.log_many, (200,))
            assert receiver.refused == 2
            got = by_body(receiver.records)
            assert got.keys() == {f"record {n}" for n in range(200)}
            assert (sink.delivered, sink.lost) == (200, 0)
        finally:
            receiver.close()

    def test_stop_flushes_the_exporter(self, start_method: str, receiver: ow.Receiver) -> None:
        """When the funnel's stop() returns, every record is at the endpoint, even with a
        batch delay far longer than the run."""
        sink = otlp(receiver.url, schedule_delay=3600)
        with logfunnel.Funnel(handlers=[sink]) as funnel:
            with funnel.context(start_method).Pool(1) as pool:
                pool.apply(ow.log_many, (50,))
            assert receiver.records == []  # nothing was due yet
        assert len(by_body(receiver.records)) == 50


class TestShortcut:
    @pytest.mark.parametrize("collector", ["thread", "process"])
    def test_funnel_otlp_sends_every_record(
        self, start_method: str, collector: str, receiver: ow.Receiver
    ) -> None:
        """``Funnel(otlp=URL)`` makes the sink, in the collector process too, and its
        stop() leaves every record at the endpoint."""
        with (
            logfunnel.Funnel(otlp=receiver.url, collector=collector) as funnel,
            funnel.context(start_method).Pool(1) as pool,
        ):
            pid = pool.apply(ow.log_many, (20,))
        got = by_body([r for r in receiver.records if r["scope"] == "otelworker"])
        assert got.keys() == {f"record {n}" for n in range(20)}
        assert {r["attributes"]["process.pid"] for r in got.values()} == {pid}

    def test_a_bad_endpoint_is_refused_at_once(self) -> None:
        """An endpoint that is not an http(s) URL is a clear error when the funnel or the
        handler is made."""
        with pytest.raises(ValueError, match="OTLP/HTTP endpoint"):
            logfunnel.Funnel(otlp="localhost:4318")
        with pytest.raises(ValueError, match="OTLP/HTTP endpoint"):
            OTLPHandler("localhost:4318")


class Silent:
    """An endpoint that accepts connections and never answers: each export hangs."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()


class TestBadEndpoint:
    def test_a_silent_endpoint_never_holds_up_other_sinks(
        self, start_method: str, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """With every export hanging, another sink still gets every record at once; the
        OTLP sink's losses, its full queue's drops included, are counted and reported
        to the other sinks while it runs and on stderr at stop."""
        silent = Silent()
        records = Records()
        sink = otlp(
            silent.url, timeout=60, max_queue_size=16, max_export_batch_size=4, flush_timeout=1
        )
        try:
            with logfunnel.Funnel(handlers=[records, sink]) as funnel:
                with funnel.context(start_method).Pool(1) as pool:
                    pool.apply(ow.log_many, (200,))
                # Every export is still hanging (60 s); the other sink has everything.
                assert records.wait_for("record 199", timeout=JOIN_TIMEOUT)
                assert sink.delivered == 0
                # All but what the queue (16), the hanging export's batch (4) and the
                # hand-offs between them hold were dropped; the exact split is timing.
                assert sink.dropped >= 200 - 2 * (16 + 4)
            stats = funnel.stats
        finally:
            silent.close()
        assert records.messages("otelworker") == [f"record {n}" for n in range(200)]
        assert sink.lost == 200
        assert stats.sink_errors >= sink.dropped
        reports = [m for m in records.own(logging.ERROR) if "OTLPHandler" in m]
        assert reports
        assert "dropped with the export queue full" in reports[0]
        err = capfd.readouterr().err
        assert "record(s) did not reach the OTLP endpoint" in err
        assert "200 in all" in err


class TestProducerCost:
    @pytest.mark.parametrize("method", ["spawn", "forkserver"])
    def test_a_worker_without_opentelemetry_sends_no_trace_fields(self, method: str) -> None:
        """A worker that never imports opentelemetry.trace gets no trace hook and sends no
        trace attributes: its records are what they were."""
        records = Records()
        with logfunnel.Funnel(handlers=[records]) as funnel, funnel.context(method).Pool(1) as pool:
            state = pool.apply(ow.log_without_opentelemetry)
        assert state == {"imported": False, "hook": False}
        (record,) = [r for r in records.records if r.name == "otelworker"]
        assert not {"otelTraceID", "otelSpanID", "otelTraceFlags"} & set(vars(record))

    def test_no_trace_fields_outside_a_span(self, receiver: ow.Receiver) -> None:
        """A worker that has OpenTelemetry but logs outside any span adds nothing."""
        records = Records()
        with (
            logfunnel.Funnel(handlers=[records]) as funnel,
            funnel.context("spawn").Pool(1) as pool,
        ):
            pool.apply(ow.log_records, ("x",))
        spans = {
            r.getMessage(): vars(r).get("otelSpanID")
            for r in records.records
            if r.name == "otelworker"
        }
        assert [m for m, span in spans.items() if span] == ["in span x"]


class TestCommandLine:
    def test_run_otlp_sends_every_process_of_the_command(self, receiver: ow.Receiver) -> None:
        """``logfunnel run --otlp URL -- CMD`` sends the records of the command's processes."""
        code = (
            "import multiprocessing as mp, _otel_workers as ow\n"
            "if __name__ == '__main__':\n"
            "    with mp.get_context('spawn').Pool(1) as pool:\n"
            "        pool.apply(ow.log_many, (5,))\n"
        )
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "logfunnel",
                "run",
                "--level",
                "INFO",
                "--otlp",
                receiver.url,
                "--",
                sys.executable,
                "-c",
                code,
            ],
            env=env,
            check=False,
            capture_output=True,
            text=True,
            timeout=JOIN_TIMEOUT,
        )
        assert done.returncode == 0, done.stderr
        got = {r["body"] for r in receiver.records if r["scope"] == "otelworker"}
        assert got == {f"record {n}" for n in range(5)}

    def test_without_opentelemetry_the_option_is_a_usage_error(self) -> None:
        """Where the otel extra is not installed, ``--otlp`` is a clear usage error
        (exit status 2) that names it, before anything runs."""
        code = (
            "import sys\n"
            "class Missing:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.startswith('opentelemetry.instrumentation'):\n"
            "            raise ModuleNotFoundError(name)\n"
            "sys.meta_path.insert(0, Missing())\n"
            "from logfunnel._cli import main\n"
            "sys.exit(main(['run', '--otlp', 'http://127.0.0.1:4318', '--', "
            "sys.executable, '-c', 'print(\"ran\")']))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code],
            check=False,
            capture_output=True,
            text=True,
            timeout=JOIN_TIMEOUT,
        )
        assert done.returncode == 2
        assert "pip install 'logfunnel[otel]'" in done.stderr
        assert "ran" not in done.stdout


def test_importing_logfunnel_does_not_import_opentelemetry() -> None:
    """The integration costs nothing to those who do not use it."""
    code = "import sys, logfunnel; print(sorted(m for m in sys.modules if 'opentelemetry' in m))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=JOIN_TIMEOUT,
    )
    assert out.stdout.strip() == "[]", out.stderr
