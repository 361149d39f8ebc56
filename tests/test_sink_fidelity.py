"""Each sink sees what it would see in one process: the same lines, the same losses.

The workers log plain ``logging`` records (see ``_sink_workers``); the test logs
the very same records in its own process through a plain stdlib handler, and
the funnel's sink must hold what that handler holds.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _sink_workers as sw
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import logfunnel
from logfunnel._collector._loop import CollectorStats
from logfunnel._producer._format import ProducerFormatter
from logfunnel._sinks._guard import SinkGuards
from logfunnel._sinks._writer import TextWriter, text_spec

JOIN_TIMEOUT = 60
#: Records per worker, as in the measurement that found the loss.
COUNT = 5000
BAD_AT = COUNT // 2
#: A line the collector wrote itself (a notice such as a failure summary).
COLLECTOR_LINE = re.compile(r"^(\S+ \S+ )?\w+ logfunnel logfunnel: ")


class RecordFileHandler(logging.FileHandler):
    """A subclass: the collector hands it whole records instead of producer-made lines."""


def ascii_sink(kind: str, path: Path, fmt: str = sw.PLAIN_FORMAT) -> logging.StreamHandler[Any]:
    """A sink that can write ASCII only, with strict errors, as ``kind`` says."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sink: logging.StreamHandler[Any]
    if kind == "file":
        sink = logging.FileHandler(path, encoding="ascii")
    elif kind == "console":  # a console under PYTHONIOENCODING=ascii
        sink = logging.StreamHandler(open(path, "w", encoding="ascii", errors="strict"))  # noqa: SIM115
    elif kind == "rotating":
        sink = logging.handlers.RotatingFileHandler(
            path, maxBytes=16 * 1024, backupCount=1000, encoding="ascii"
        )
    else:
        sink = RecordFileHandler(path, encoding="ascii")
    sink.setFormatter(logging.Formatter(fmt))
    return sink


def close_sink(sink: logging.StreamHandler[Any]) -> None:
    """Close ``sink`` and, for a console, the stream it was given."""
    stream = sink.stream
    sink.close()
    if not isinstance(sink, logging.FileHandler):
        stream.close()


def read_set(path: Path) -> list[str]:
    """The lines of ``path`` and of its rotated files, oldest first."""
    rotated = sorted(
        (p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()),
        key=lambda p: -int(p.suffix[1:]),
    )
    lines: list[str] = []
    for file in [*rotated, path]:
        if file.exists():
            lines += file.read_text(encoding="ascii").splitlines()
    return lines


def by_worker(lines: list[str]) -> dict[str, list[str]]:
    """The workers' lines, in order, per worker; the collector's own lines are left out."""
    seen: dict[str, list[str]] = {}
    for line in lines:
        if not COLLECTOR_LINE.match(line):
            worker = re.search(r" (w\d+) n\d+", line)
            assert worker, f"a line from nowhere: {line!r}"
            seen.setdefault(worker.group(1), []).append(line)
    return seen


def in_one_process(sink: logging.Handler, work: Callable[[], None]) -> None:
    """Run ``work`` in this process with ``sink`` as the only handler of its records."""
    log = sw.log
    log.addHandler(sink)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        work()
    finally:
        log.removeHandler(sink)
        log.propagate = True
        log.setLevel(logging.NOTSET)


def run_workers(
    funnel: logfunnel.Funnel,
    method: str,
    target: Callable[..., None],
    args: list[tuple[Any, ...]],
) -> None:
    ctx = funnel.context(method)
    procs = [ctx.Process(target=target, args=one) for one in args]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(JOIN_TIMEOUT)
        assert proc.exitcode == 0


def both_workers() -> None:
    sw.numbered(0, COUNT, BAD_AT)
    sw.numbered(1, COUNT)


@pytest.fixture
def info_root() -> None:
    """The parent's root at INFO, which the workers' levels follow; restored by conftest."""
    logging.getLogger().setLevel(logging.INFO)


@pytest.mark.usefixtures("info_root")
class TestUnencodableRecord:
    @pytest.mark.parametrize("kind", ["file", "console", "rotating", "record"])
    def test_only_the_bad_record_is_lost_and_the_loss_is_on_stderr(
        self, start_method: str, kind: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """An ASCII-only sink loses just the record it cannot encode, as in one process,
        and being the only sink, it reports the loss on stderr: a traceback and a count."""
        plain = ascii_sink(kind, tmp_path / "plain" / "app.log")
        in_one_process(plain, both_workers)
        close_sink(plain)
        plain_err = capfd.readouterr().err
        assert "--- Logging error ---" in plain_err
        assert "UnicodeEncodeError" in plain_err

        sink = ascii_sink(kind, tmp_path / "funnel" / "app.log")
        with logfunnel.Funnel(handlers=[sink]) as funnel:
            run_workers(funnel, start_method, sw.numbered, [(0, COUNT, BAD_AT), (1, COUNT)])
        close_sink(sink)
        err = capfd.readouterr().err

        expected = by_worker(read_set(tmp_path / "plain" / "app.log"))
        assert sum(map(len, expected.values())) == 2 * COUNT - 1
        assert by_worker(read_set(tmp_path / "funnel" / "app.log")) == expected
        assert funnel.stats.sink_errors == 1
        assert err.count("--- logfunnel: sink") == 1
        assert "UnicodeEncodeError" in err
        summary = r"logfunnel: sink <\w+ \S+app\.log \(NOTSET\)> failed 1 time\(s\) \(1 in all\)"
        assert re.search(summary + r"; last error: UnicodeEncodeError: ", err), err

    def test_a_summary_no_other_sink_can_write_goes_to_stderr(
        self, start_method: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """When the only other sink fails too (a full disk), a sink's loss is counted on
        stderr; the full disk's own summary reaches the ASCII sink."""
        path = tmp_path / "app.log"
        sink = ascii_sink("file", path)
        full_disk = logging.FileHandler("/dev/full")
        full_disk.setFormatter(logging.Formatter(sw.PLAIN_FORMAT))
        with logfunnel.Funnel(handlers=[sink, full_disk]) as funnel:
            run_workers(funnel, start_method, sw.numbered, [(0, COUNT, BAD_AT), (1, COUNT)])
        err = capfd.readouterr().err

        lines = read_set(path)
        assert sum(map(len, by_worker(lines).values())) == 2 * COUNT - 1
        assert funnel.stats.sink_errors >= 2  # the bad record, and the full disk at least once
        assert re.search(r"logfunnel: sink <FileHandler \S+app\.log \(NOTSET\)> failed 1 ", err)
        assert any("sink <FileHandler /dev/full (NOTSET)> failed" in line for line in lines)

    def test_a_summary_reaches_a_sink_that_cannot_encode_the_failed_record(
        self, start_method: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """Two ASCII-only sinks both lose the bad record; each one's count of it is
        written, in ASCII, by the other, so neither needs stderr for it."""
        file_sink = ascii_sink("file", tmp_path / "file.log")
        console = ascii_sink("console", tmp_path / "console.log")
        with logfunnel.Funnel(handlers=[file_sink, console]) as funnel:
            run_workers(funnel, start_method, sw.numbered, [(0, COUNT, BAD_AT), (1, COUNT)])
        close_sink(console)
        err = capfd.readouterr().err

        assert funnel.stats.sink_errors == 2
        for own, other in (("file", "console"), ("console", "file")):
            lines = read_set(tmp_path / f"{own}.log")
            assert sum(map(len, by_worker(lines).values())) == 2 * COUNT - 1
            summaries = [line for line in lines if f"{other}.log (NOTSET)> failed 1 " in line]
            assert len(summaries) == 1
            assert "last error: UnicodeEncodeError: 'ascii' codec can't encode" in summaries[0]
        assert err.count("--- logfunnel: sink") == 2
        assert "failed 1 time(s)" not in err


class TestGuard:
    def test_a_first_failure_of_many_lines_shows_its_traceback(
        self, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """A sink whose first failure is a whole batch (a full disk) still shows that
        failure's traceback on stderr, once, and its count there when no sink takes it."""
        sink = logging.FileHandler("/dev/full")
        stats = CollectorStats()
        reports: list[str] = []

        def report(level: int, msg: str, *args: object, skip: object = None) -> None:
            reports.append(msg % args)  # a collector with no other sink

        guards = SinkGuards([sink], stats, report)
        writer = TextWriter(sink)
        writer.submit = guards.guard_of(sink).submit
        for batch in range(2):
            writer.pending += [f"batch {batch} record {n}\n".encode() for n in range(100)]
            writer.lines = 100
            writer.flush()
        guards.close()
        with contextlib.suppress(OSError):  # its last flush fails too
            sink.close()
        err = capfd.readouterr().err
        assert stats.sink_errors == 200
        assert err.count("--- logfunnel: sink") == 1
        assert "No space left on device" in err
        assert reports == [
            "logfunnel: sink <FileHandler /dev/full (NOTSET)> failed 100 time(s) (100 in all); "
            "last error: OSError: [Errno 28] No space left on device",
            "logfunnel: sink <FileHandler /dev/full (NOTSET)> failed 100 time(s) (200 in all); "
            "last error: OSError: [Errno 28] No space left on device",
        ]
        assert err.count("logfunnel: sink <FileHandler /dev/full (NOTSET)> failed 100 ") == 2


@pytest.mark.usefixtures("info_root")
class TestTimestamps:
    def test_lines_after_an_exception_keep_their_own_second(
        self, start_method: str, tmp_path: Path
    ) -> None:
        """Plain records after one with an exception or a stack, in the same millisecond
        of a later second, carry their own time, exactly as ``logging.Formatter`` writes it."""
        path = tmp_path / "app.log"
        sink = logging.FileHandler(path)
        sink.setFormatter(logging.Formatter(sw.FORMAT))
        with logfunnel.Funnel(handlers=[sink]) as funnel:
            run_workers(funnel, start_method, sw.pinned, [(0,)])
        reference = logging.Formatter(sw.FORMAT)
        expected = [
            reference.format(sw.pinned_record(0, number, created, kind))
            for number, (created, kind) in enumerate(sw.PINNED)
        ]
        got = [line for line in path.read_text().splitlines() if not COLLECTOR_LINE.match(line)]
        assert got == "\n".join(expected).splitlines()

    @settings(max_examples=300, deadline=None)
    @given(data=st.data())
    def test_producer_formatter_is_logging_formatter(self, data: st.DataObject) -> None:
        """Over any sequence of records (any times, some with an exception or a stack),
        the producer's formatter writes what ``logging.Formatter`` writes."""
        fmt, style = data.draw(st.sampled_from(FORMATS))
        datefmt = data.draw(st.sampled_from([None, "%H:%M:%S", "%Y-%m-%d %H:%M:%S %Z"]))
        utc = data.draw(st.booleans())
        reference = logging.Formatter(fmt, datefmt, style)  # type: ignore[arg-type]
        if utc:
            reference.converter = time.gmtime
        sink = logging.StreamHandler()
        sink.setFormatter(reference)
        spec = text_spec(sink)
        assert spec is not None
        producer = ProducerFormatter(spec)
        # Few distinct seconds and milliseconds, so that records share them.
        base = data.draw(st.integers(-(10**9), 4 * 10**9))
        records = data.draw(st.lists(RECORDS, min_size=1, max_size=30))
        for number, (second, millisecond, within, kind) in enumerate(records):
            created = base + second + millisecond / 1000 + within
            ours, theirs = (make_record(number, created, millisecond, kind) for _ in range(2))
            assert producer.format(ours) == reference.format(theirs)


FORMATS = [
    ("%(asctime)s %(levelname)s %(message)s", "%"),
    ("%(asctime)s|%(msecs)03d|%(message)s", "%"),
    ("%(message)s", "%"),
    ("{asctime} {levelname:<8} {message}", "{"),
    ("$asctime $message", "$"),
]
#: A record: its second (of a few), its millisecond (of a few), where in that
#: millisecond, and whether it has an exception or a stack.
RECORDS = st.tuples(
    st.integers(0, 3),
    st.sampled_from([0, 1, 125, 999]),
    st.floats(0, 0.0009),
    st.sampled_from(["plain", "plain", "exc", "stack"]),
)


def _exc_info() -> Any:
    try:
        raise KeyError("pinned")
    except KeyError:
        return sys.exc_info()


EXC_INFO = _exc_info()


def make_record(number: int, created: float, millisecond: int, kind: str) -> logging.LogRecord:
    """A record at ``created`` with ``msecs`` pinned to ``millisecond``."""
    record = logging.LogRecord(
        "n",
        logging.INFO,
        __file__,
        1,
        "record %d",
        (number,),
        EXC_INFO if kind == "exc" else None,
        sinfo="Stack (most recent call last):\n  here" if kind == "stack" else None,
    )
    record.created = created
    record.msecs = float(millisecond)
    return record
