"""Text sinks: producers format, the collector writes bytes in batches, output is unchanged."""

from __future__ import annotations

import errno
import io
import logging
import logging.handlers
import re
import sys
import time
from pathlib import Path
from typing import Any

import _workers
import pytest
from _support import COLLECTOR_NOTICE, Records, join_all, read_lines

import logfunnel
from logfunnel._audit import numbered_set
from logfunnel._producer._format import ProducerFormatter
from logfunnel._sinks._guard import LINES_ATTR
from logfunnel._sinks._writer import TextWriter, text_spec

LINE = re.compile(r"^\S+ \S+ (\S+)\[(\d+)\] (\w+) worker: task (\d+) record (\d+)$")


def run_tasks(funnel: logfunnel.Funnel, method: str, tasks: int, count: int) -> None:
    ctx = funnel.context(method)
    procs = [ctx.Process(target=_workers.steps_returning, args=(t, count)) for t in range(tasks)]
    for proc in procs:
        proc.start()
    join_all(procs, exitcode=0)


def check_once_in_order(lines: list[str], tasks: int, count: int) -> None:
    seen: dict[int, list[int]] = {}
    for line in lines:
        if COLLECTOR_NOTICE.search(line):
            # The collector's own notices (a sink moved to its own thread on a
            # loaded machine) are records too, not torn ones.
            continue
        match = LINE.match(line)
        assert match, f"torn or foreign line {line!r}"
        seen.setdefault(int(match.group(4)), []).append(int(match.group(5)))
    assert {task: numbers for task, numbers in seen.items()} == {
        task: list(range(count)) for task in range(tasks)
    }


class TestTextPath:
    def test_file_sink_gets_every_line_once_in_order(
        self, start_method: str, tmp_path: Path
    ) -> None:
        """With one shared format, lines formatted by producers land whole, once, in order."""
        path = tmp_path / "app.log"
        with logfunnel.Funnel(path, level=logging.INFO) as funnel:
            assert funnel._collector is not None
            assert funnel._collector.plan.one_text
            run_tasks(funnel, start_method, 4, 5000)
        check_once_in_order(read_lines(numbered_set(path)), 4, 5000)

    def test_size_rotation_happens_between_records(self, start_method: str, tmp_path: Path) -> None:
        """A 10 KiB rotating sink rotates many times and loses, tears or doubles nothing."""
        path = tmp_path / "app.log"
        with logfunnel.Funnel(path, max_bytes=10 * 1024, backups=10_000, level=logging.INFO) as f:
            run_tasks(f, start_method, 4, 2000)
        files = list(tmp_path.glob("app.log*"))
        assert len(files) > 50
        assert all(file.stat().st_size <= 10 * 1024 for file in files)
        check_once_in_order(read_lines(numbered_set(path)), 4, 2000)

    def test_time_rotation_rolls_over_when_due(self, tmp_path: Path) -> None:
        """A time-rotating sink rolls over on the text path when its rollover time has come."""
        path = tmp_path / "timed.log"
        with logfunnel.Funnel(path, when="H", backups=5) as funnel:
            (sink,) = funnel.sinks
            assert isinstance(sink, logging.handlers.TimedRotatingFileHandler)
            logging.getLogger("worker").warning("task 0 record 0")
            funnel._collector.stop()  # type: ignore[union-attr]  # drain, then inspect
            sink.rolloverAt = int(time.time()) - 1
            funnel._collector.plan.writers[0].pending.append(b"after the rollover\n")  # type: ignore[union-attr]
            funnel._collector.plan.flush()  # type: ignore[union-attr]
        rotated = [p for p in tmp_path.iterdir() if p.name != "timed.log"]
        assert len(rotated) == 1
        assert "task 0 record 0" in rotated[0].read_text()
        assert path.read_text() == "after the rollover\n"

    def test_sink_levels_apply_to_preformatted_lines(
        self, tmp_path: Path, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """A WARNING console beside an INFO file gets only the warnings."""
        path = tmp_path / "app.log"
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(logging.WARNING)
        console.setFormatter(logging.Formatter(logfunnel.DEFAULT_FORMAT))
        file_sink = logging.FileHandler(path)
        file_sink.setFormatter(logging.Formatter(logfunnel.DEFAULT_FORMAT))
        with logfunnel.Funnel(handlers=[file_sink, console], level=logging.INFO):
            logging.getLogger("worker").info("task 0 record 0")
            logging.getLogger("worker").warning("task 0 record 1")
        err = capfd.readouterr().err
        assert "task 0 record 1" in err
        assert "task 0 record 0" not in err
        assert len(path.read_text().splitlines()) == 2

    def test_mixed_sinks_see_the_same_records(self, start_method: str, tmp_path: Path) -> None:
        """A text sink and a record sink side by side: the same records, the same text."""
        path = tmp_path / "app.log"
        capture = Records()
        file_sink = logging.FileHandler(path)
        formatter = logging.Formatter(logfunnel.DEFAULT_FORMAT)
        file_sink.setFormatter(formatter)
        with logfunnel.Funnel(handlers=[file_sink, capture], level=logging.INFO) as funnel:
            run_tasks(funnel, start_method, 2, 500)
        lines = path.read_text().splitlines()
        check_once_in_order(lines, 2, 500)
        assert lines == [formatter.format(record) for record in capture.records]

    def test_bad_input_is_readable_on_the_text_path(self, tmp_path: Path) -> None:
        """A message whose argument cannot be printed still becomes a readable line."""
        path = tmp_path / "app.log"
        with logfunnel.Funnel(path):
            logging.getLogger("worker").warning("broken %s", _workers.BrokenStr())
            logging.getLogger("worker").warning("surrogate \ud800")
        text = path.read_text()
        assert "'broken %s' % (<unrepresentable BrokenStr: ValueError>,)" in text
        assert "surrogate \\ud800" in text


class TestProducerFormatter:
    @pytest.mark.parametrize(
        ("fmt", "datefmt", "style"),
        [
            (logfunnel.DEFAULT_FORMAT, None, "%"),
            ("%(asctime)s|%(msecs)03d|%(relativeCreated)d|%(message)s", "%H:%M:%S", "%"),
            ("{asctime} {levelname:<8} {name} {message}", None, "{"),
            ("$asctime $levelname $message", None, "$"),
        ],
    )
    def test_formats_exactly_like_the_sink(self, fmt: str, datefmt: str | None, style: str) -> None:
        """The producer's rebuilt formatter gives the sink formatter's exact text, also
        for records in one millisecond, or in the same millisecond of the next second."""
        sink = logging.StreamHandler()
        sink.setFormatter(logging.Formatter(fmt, datefmt, style))  # type: ignore[arg-type]
        spec = text_spec(sink)
        assert spec is not None
        producer = ProducerFormatter(spec)
        base = time.time()
        for offset in (0.0, 0.0002, 0.0012, 1.0, 1.0002, 0.25, 1.5, 1.75, 3600.0, 3601.0):
            record = logging.LogRecord("n", logging.INFO, "p", 1, "m %d", (7,), None)
            record.created = base + offset
            record.msecs = (record.created - int(record.created)) * 1000
            assert producer.format(record) == sink.formatter.format(record)  # type: ignore[union-attr]

    def test_utc_converter_is_kept(self) -> None:
        """A formatter that converts with gmtime keeps doing so in the producer."""
        formatter = logging.Formatter("%(asctime)s")
        formatter.converter = time.gmtime
        sink = logging.StreamHandler()
        sink.setFormatter(formatter)
        spec = text_spec(sink)
        assert spec is not None
        assert spec["utc"] is True
        record = logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None)
        assert ProducerFormatter(spec).format(record) == formatter.format(record)

    def test_only_plain_sinks_are_formatted_by_producers(self) -> None:
        """Subclasses, custom formatters and filtered sinks get real records instead."""

        class MyHandler(logging.StreamHandler):  # type: ignore[type-arg]
            pass

        class MyFormatter(logging.Formatter):
            pass

        filtered = logging.StreamHandler()
        filtered.addFilter(lambda record: True)
        custom = logging.StreamHandler()
        custom.setFormatter(MyFormatter())
        assert text_spec(MyHandler()) is None
        assert text_spec(filtered) is None
        assert text_spec(custom) is None
        assert text_spec(logging.StreamHandler()) is not None


def batch_of(count: int, bad: int) -> tuple[list[str], list[bytes | bytearray]]:
    """``count`` records, and the batch the collector would make of them: runs of
    single lines and, alone, one record of two lines. Record ``bad`` has a character
    ASCII lacks."""
    texts = [f"record {n}\n" for n in range(count)]
    texts[bad] = f"record {bad} caf\u00e9\n"
    texts[7] = "record 7 first line\n  second line\n"
    encoded = [text.encode() for text in texts]
    return texts, [bytearray(b"".join(encoded[:7])), encoded[7], bytearray(b"".join(encoded[8:]))]


def emit_each(sink: logging.Handler, texts: list[str]) -> None:
    """What the stdlib does in one process: one ``handle`` per record."""
    sink.setFormatter(logging.Formatter("%(message)s"))
    for text in texts:
        sink.handle(logging.makeLogRecord({"msg": text[:-1]}))


def failures_of(sink: logging.Handler, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, int]]:
    """Each ``handleError`` of ``sink``: the exception type and the lines it counts."""
    failures: list[tuple[Any, int]] = []

    def handle_error(record: logging.LogRecord) -> None:
        failures.append((sys.exc_info()[0], record.__dict__.get(LINES_ATTR, 1)))

    monkeypatch.setattr(sink, "handleError", handle_error)
    return failures


class CharByChar:
    """A stream that writes one character at a time and holds ASCII only: a write
    it refuses has already written part of its text."""

    def __init__(self) -> None:
        self.written: list[str] = []

    def write(self, text: str) -> None:
        for char in text:
            char.encode("ascii")
            self.written.append(char)

    def flush(self) -> None:
        pass


class FullAfter(io.RawIOBase):
    """A file that takes ``room`` bytes, then fails every write as a full disk does."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if not self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        taken = bytes(data[: self.room])
        self.data += taken
        self.room -= len(taken)
        return len(taken)


class TestFailedWrites:
    @pytest.mark.parametrize("kind", ["file", "console"])
    def test_a_record_the_stream_cannot_encode_is_lost_alone(
        self, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A batch holding one record an ASCII stream cannot encode writes every other
        record, as one process would, and reports that record alone."""
        texts, batch = batch_of(1000, 500)

        def sink_at(path: Path) -> logging.StreamHandler[Any]:
            if kind == "file":
                return logging.FileHandler(path, encoding="ascii")
            return logging.StreamHandler(open(path, "w", encoding="ascii"))

        plain = sink_at(tmp_path / "plain.log")
        failures_of(plain, monkeypatch)
        emit_each(plain, texts)
        ours = sink_at(tmp_path / "ours.log")
        failures = failures_of(ours, monkeypatch)
        TextWriter(ours).write(batch)
        for sink in (plain, ours):
            sink.stream.close()
        expected = (tmp_path / "plain.log").read_bytes()
        assert len(expected.splitlines()) == 1000
        assert (tmp_path / "ours.log").read_bytes() == expected
        assert failures == [(UnicodeEncodeError, 1)]

    def test_a_stream_that_fails_half_way_gets_what_emit_gives_it(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A stream whose refused write may be partly written gets one write per record,
        so it holds exactly what it holds in one process: nothing doubled, nothing lost."""
        texts, batch = batch_of(1000, 500)
        plain = logging.StreamHandler(CharByChar())
        failures_of(plain, monkeypatch)
        emit_each(plain, texts)
        ours = logging.StreamHandler(CharByChar())
        failures = failures_of(ours, monkeypatch)
        TextWriter(ours).write(batch)
        assert "".join(ours.stream.written) == "".join(plain.stream.written)
        assert failures == [(UnicodeEncodeError, 1)]

    def test_a_failed_record_takes_no_room_in_a_rotating_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Size rotation after a record that failed falls where the stdlib puts it: the
        lost record's bytes do not count towards the size of the file."""
        texts, batch = batch_of(100, 40)
        files = {}
        for name in ("plain", "ours"):
            (tmp_path / name).mkdir()
            sink = logging.handlers.RotatingFileHandler(
                tmp_path / name / "app.log", maxBytes=200, backupCount=100, encoding="ascii"
            )
            failures_of(sink, monkeypatch)
            if name == "plain":
                emit_each(sink, texts)
            else:
                TextWriter(sink).write(batch)
            sink.close()
            files[name] = {p.name: p.read_text() for p in (tmp_path / name).iterdir()}
        assert len(files["plain"]) > 5
        assert files["ours"] == files["plain"]

    def test_a_write_that_fails_under_the_text_layer_writes_nothing_twice(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """When the disk fills up part-way through a batch, no record is written again:
        where the write stopped is unknown, so the batch is counted as failed instead."""
        texts = [f"record {n}\n" for n in range(2000)]
        raw = FullAfter(room=10_000)
        stream = io.TextIOWrapper(io.BufferedWriter(raw), encoding="ascii")
        sink = logging.StreamHandler(stream)
        failures = failures_of(sink, monkeypatch)
        TextWriter(sink).write([bytearray("".join(texts).encode())])
        written = raw.data.decode().splitlines(keepends=True)
        assert 0 < len(written) < len(texts)
        assert "".join(written) == "".join(texts)[: len(raw.data)]
        assert failures == [(OSError, 2000)]
