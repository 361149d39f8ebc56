"""ProcessFileHandler: a file per process, names that never collide, lines that merge can place."""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import signal
import socket
from pathlib import Path
from typing import Any

import _strategy_workers as workers
import pytest
from _support import JOIN_TIMEOUT, audit, run_all

import logfunnel
from logfunnel._cli import main
from logfunnel._files import _process as _processfile

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"
FILE_NAME = re.compile(r"w-(?P<host>.+)-(?P<pid>\d+)-(?P<start>\d{8}T\d{6}\.\d{6}Z)\.log")


def record_line(
    handler: logfunnel.ProcessFileHandler, msg: str, created: float = 1.5, exc: Any = None
) -> str:
    record = logging.LogRecord("app", logging.INFO, __file__, 1, msg, (), exc)
    record.created = created
    return handler.line(record, handler.format(record))


def first_lines(path: Path) -> list[re.Match[str]]:
    """The record starts of ``path``: time, sequence, pid and the rest."""
    pattern = re.compile(rf"({STAMP}) (\d+) INFO \S+\[(\d+)\] strategy: (.*)")
    text = path.read_text(encoding="utf-8")
    return [m for line in text.splitlines() if (m := pattern.fullmatch(line))]


class TestNames:
    def test_the_default_name_holds_host_pid_and_start_time(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """logfunnel-HOST-PID-START.log, the start time in UTC to the microsecond."""
        monkeypatch.chdir(tmp_path)
        handler = logfunnel.ProcessFileHandler()
        handler.close()
        pid, start = _processfile._process_identity()
        host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())
        expected = f"logfunnel-{host}-{pid}-{_processfile._start_label(start)}.log"
        assert Path(handler.path) == tmp_path / expected
        assert re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z", _processfile._start_label(start))
        assert sorted(p.name for p in tmp_path.iterdir()) == [expected]

    def test_a_reused_pid_gets_another_name(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Two processes with the same pid, started a microsecond apart, write different files."""
        pattern = str(tmp_path / "w-{host}-{pid}-{start}.log")
        names = []
        for start in (1700000000.000001, 1700000000.000002):
            monkeypatch.setattr(_processfile, "_identity", (os.getpid(), start))
            handler = logfunnel.ProcessFileHandler(pattern, delay=True)
            names.append(handler.path)
        assert names[0] != names[1]
        assert names[0].endswith("-20231114T221320.000001Z.log")

    def test_every_process_writes_a_file_of_its_own(
        self, start_method: str, tmp_path: Path
    ) -> None:
        """Four processes on one pattern make four files, each holding only its own records."""
        pattern = str(tmp_path / "w-{host}-{pid}-{start}.log")
        ctx = multiprocessing.get_context(start_method)
        run_all(ctx, workers.process_file_writer, [(pattern, w, 50) for w in range(4)])
        files = sorted(tmp_path.iterdir())
        assert len(files) == 4
        seen = set()
        for file in files:
            name = FILE_NAME.fullmatch(file.name)
            assert name is not None
            lines = first_lines(file)
            assert {m.group(3) for m in lines} == {name.group("pid")}
            assert [int(m.group(2)) for m in lines] == list(range(50))
            seen |= {int(m.group(4).split()[0][1:]) for m in lines}
        assert seen == {0, 1, 2, 3}

    @pytest.mark.parametrize(
        ("pattern", "error"),
        [("app.log", "needs {pid}"), ("{host}-{start}.log", "needs {pid}"), ("{pid}-{x}", "x")],
    )
    def test_patterns_that_would_collide_or_do_not_parse_are_refused(
        self, pattern: str, error: str
    ) -> None:
        """Without {pid} every process would share a file: that is an error, not a default."""
        with pytest.raises(ValueError, match=re.escape(error)):
            logfunnel.ProcessFileHandler(pattern)


class TestFork:
    def test_a_fork_child_opens_its_own_file(self, start_method: str, tmp_path: Path) -> None:
        """A process forks after logging: the child's records go to a new file, named for it."""
        pattern = str(tmp_path / "w-{host}-{pid}-{start}.log")
        ctx = multiprocessing.get_context(start_method)
        run_all(ctx, workers.fork_then_log, [(pattern, 20)])
        files = sorted(tmp_path.iterdir(), key=lambda f: f.stat().st_size)
        assert len(files) == 2
        child, parent = (first_lines(f) for f in files)
        assert [m.group(4).split()[0] for m in child] == ["W1"] * 20
        assert [m.group(4).split()[0] for m in parent] == ["W0"] * 20 + ["W2"] * 20
        assert [int(m.group(2)) for m in child] == list(range(20))
        assert [int(m.group(2)) for m in parent] == list(range(40))
        for file, lines in zip(files, (child, parent), strict=True):
            name = FILE_NAME.fullmatch(file.name)
            assert name is not None
            assert {m.group(3) for m in lines} == {name.group("pid")}

    def test_a_relative_pattern_is_resolved_once(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Changing directory later does not move this process's file or its children's."""
        monkeypatch.chdir(tmp_path)
        handler = logfunnel.ProcessFileHandler("w-{pid}.log", delay=True)
        (tmp_path / "elsewhere").mkdir()
        monkeypatch.chdir(tmp_path / "elsewhere")
        assert handler.pattern == str(tmp_path / "w-{pid}.log")
        assert handler.path == str(tmp_path / f"w-{os.getpid()}.log")


class TestLines:
    def test_a_record_starts_with_utc_microseconds_and_its_sequence(self, tmp_path: Path) -> None:
        """Fixed-width UTC time (so text order is time order), then the per-process sequence."""
        handler = logfunnel.ProcessFileHandler(tmp_path / "{pid}.log", delay=True)
        first = record_line(handler, "hello", created=1700000000.25)
        assert first == (
            f"2023-11-14T22:13:20.250000Z 0 INFO MainProcess[{os.getpid()}] app: hello\n"
        )
        assert record_line(handler, "x", created=0.000001).startswith(
            "1970-01-01T00:00:00.000001Z "
        )

    def test_the_sequence_counts_the_records_of_this_process(self, tmp_path: Path) -> None:
        """Each record written takes the next number, starting from 0."""
        handler = logfunnel.ProcessFileHandler(tmp_path / "{pid}.log")
        for n in range(3):
            handler.handle(logging.LogRecord("app", logging.INFO, __file__, 1, f"m{n}", (), None))
        handler.close()
        lines = Path(handler.path).read_text().splitlines()
        assert [line.split(" ", 2)[1] for line in lines] == ["0", "1", "2"]

    def test_continuation_lines_can_never_pass_for_a_record_start(self, tmp_path: Path) -> None:
        """A line inside a message that looks like a record start gets one leading space."""
        handler = logfunnel.ProcessFileHandler(tmp_path / "{pid}.log", delay=True)
        text = record_line(handler, "top\n2023-11-14T22:13:20.250000Z 7 fake\n  tail")
        lines = text.splitlines()
        assert lines[1:] == [" 2023-11-14T22:13:20.250000Z 7 fake", "  tail"]
        assert [bool(re.match(_processfile.RECORD_START, line)) for line in lines] == [
            True,
            False,
            False,
        ]

    def test_a_traceback_follows_its_record(self, tmp_path: Path) -> None:
        """Exception text is written as continuation lines of the record that logged it."""
        handler = logfunnel.ProcessFileHandler(tmp_path / "{pid}.log", delay=True)
        try:
            raise ValueError("boom")
        except ValueError:
            import sys

            text = record_line(handler, "failed", exc=sys.exc_info())
        lines = text.splitlines()
        assert lines[0].endswith("app: failed")
        assert lines[1] == "Traceback (most recent call last):"
        assert lines[-1] == "ValueError: boom"

    def test_a_custom_formatter_keeps_time_and_sequence_in_front(self, tmp_path: Path) -> None:
        """setFormatter changes what follows the record start, never the start itself."""
        handler = logfunnel.ProcessFileHandler(tmp_path / "{pid}.log", delay=True)
        handler.setFormatter(logging.Formatter("<%(message)s>"))
        assert record_line(handler, "hi", created=1.5) == "1970-01-01T00:00:01.500000Z 0 <hi>\n"

    def test_text_that_does_not_encode_is_written_readably(self, tmp_path: Path) -> None:
        """A lone surrogate or an astral character does not lose the record."""
        handler = logfunnel.ProcessFileHandler(tmp_path / "{pid}.log")
        handler.setFormatter(logging.Formatter("%(message)s"))
        record = logging.LogRecord("a", logging.INFO, __file__, 1, "\ud800 \U0001d11e", (), None)
        handler.handle(record)
        handler.close()
        assert Path(handler.path).read_text().endswith(" 0 \\ud800 \U0001d11e\n")


class TestNothingLost:
    def test_records_are_in_the_file_when_the_process_is_killed(
        self, start_method: str, tmp_path: Path
    ) -> None:
        """No buffer to die with the process: after SIGKILL every logged record is there."""
        pattern = str(tmp_path / "w-{host}-{pid}-{start}.log")
        ctx = multiprocessing.get_context(start_method)
        logged, never = ctx.Event(), ctx.Event()
        proc = ctx.Process(
            target=workers.process_file_then_wait, args=(pattern, 500, logged, never)
        )
        proc.start()
        assert logged.wait(JOIN_TIMEOUT)
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(JOIN_TIMEOUT)
        assert proc.exitcode == -signal.SIGKILL
        (file,) = tmp_path.iterdir()
        result = audit([file])
        assert result.missing(1, 500) == []
        assert not result.torn


def check_merged(start_method: str, tmp_path: Path, procs: int, count: int) -> None:
    """``procs`` writers, then ``logfunnel merge``: every record once, in time order."""
    logs = tmp_path / "logs"
    logs.mkdir()
    pattern = str(logs / "w-{host}-{pid}-{start}.log")
    ctx = multiprocessing.get_context(start_method)
    run_all(ctx, workers.process_file_writer, [(pattern, w, count) for w in range(procs)])
    out = tmp_path / "merged.log"
    assert main(["merge", *map(str, sorted(logs.iterdir())), "-o", str(out)]) == 0
    stamps = []
    seqs: dict[str, list[int]] = {}
    result = audit()
    continuation = 0
    with out.open(encoding="utf-8") as merged:
        for line in merged:
            match = re.match(rf"({STAMP}) (\d+) INFO \S+\[(\d+)\] strategy: (.*)", line)
            if match is None:
                assert line in ("  second line\n", "  third line\n")
                continuation += 1
                continue
            stamps.append(match.group(1))
            seqs.setdefault(match.group(3), []).append(int(match.group(2)))
            result.add(match.group(4))
    assert result.missing(procs, count) == []
    assert result.doubled() == {}
    assert not result.torn
    assert not result.reordered
    assert stamps == sorted(stamps)
    assert all(s == list(range(count)) for s in seqs.values())
    assert len(seqs) == procs
    assert continuation == 2 * procs * len(range(5, count, 97))


class TestMergeOfProcessFiles:
    def test_four_processes_merge_into_one_ordered_log(
        self, start_method: str, tmp_path: Path
    ) -> None:
        """4 x 2,000 records merged: each once, in global time order, each process in its order."""
        check_merged(start_method, tmp_path, 4, 2000)

    @pytest.mark.stress
    def test_stress_eight_processes(self, start_method: str, tmp_path: Path) -> None:
        """The issue's stress: 8 x 20,000 records merged, each once, in time and process order."""
        check_merged(start_method, tmp_path, 8, 20_000)
