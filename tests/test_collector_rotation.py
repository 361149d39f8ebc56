"""Rotation in the collector: a funnel's file sinks rotate without losing or doubling a record."""

from __future__ import annotations

import logging
import logging.handlers
import re
from pathlib import Path

import _strategy_workers as workers
import pytest
from _support import audit, dated_set, run_all

import logfunnel
from logfunnel._audit import numbered_set

FORMAT = "%(asctime)s %(processName)s[%(process)d] %(levelname)s %(message)s"


def size_funnel(sink: str, path: Path, max_bytes: int, backups: int) -> logfunnel.Funnel:
    """A funnel rotating ``path`` by size, built by the shortcut or from a handler."""
    if sink == "filename":
        return logfunnel.Funnel(path, max_bytes=max_bytes, backups=backups)
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter(FORMAT))
    return logfunnel.Funnel(handlers=[handler])


def time_funnel(sink: str, path: Path) -> logfunnel.Funnel:
    """A funnel rotating ``path`` every second: shortcut, stdlib handler, or LockedFileHandler."""
    if sink == "filename":
        return logfunnel.Funnel(path, when="S", backups=1000)
    handler: logging.Handler
    if sink == "handlers":
        handler = logging.handlers.TimedRotatingFileHandler(
            path, when="S", backupCount=1000, encoding="utf-8"
        )
    else:
        handler = logfunnel.LockedFileHandler(path, when="S", backups=1000)
    handler.setFormatter(logging.Formatter(FORMAT))
    return logfunnel.Funnel(handlers=[handler])


def run_workers(
    funnel: logfunnel.Funnel,
    start_method: str,
    procs: int,
    count: int,
    seconds: float = 0.0,
    pace: float = 0.0,
) -> None:
    with funnel:
        args = [(w, count, seconds, pace) for w in range(procs)]
        run_all(funnel.context(start_method), workers.funnel_worker, args)
        assert funnel.stats.gaps == 0


def check_size_rotation(
    sink: str, start_method: str, tmp_path: Path, procs: int, count: int, max_bytes: int
) -> None:
    path = tmp_path / "funnel.log"
    run_workers(size_funnel(sink, path, max_bytes, 1000), start_method, procs, count)
    names = {p.name for p in tmp_path.iterdir()} - {"funnel.log"}
    assert [n for n in names if not re.fullmatch(r"funnel\.log\.[1-9][0-9]*", n)] == []
    numbers = sorted(int(n.rsplit(".", 1)[1]) for n in names)
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) >= 70
    result = audit(numbered_set(path))
    assert not result.torn
    assert result.missing(procs, count) == []
    assert result.doubled() == {}
    assert not result.reordered


@pytest.mark.parametrize("sink", ["filename", "handlers"])
class TestSizeRotation:
    def test_every_record_once_across_seventy_rotations(
        self, sink: str, start_method: str, tmp_path: Path
    ) -> None:
        """4 processes x 300 records, 1 KiB files: 70+ rotations, each record once, whole."""
        check_size_rotation(sink, start_method, tmp_path, 4, 300, 1024)

    @pytest.mark.stress
    def test_stress_ten_processes_ten_kib(
        self, sink: str, start_method: str, tmp_path: Path
    ) -> None:
        """The issue's stress against a funnel: 10 x 1,000 records, 10 KiB files, each once."""
        check_size_rotation(sink, start_method, tmp_path, 10, 1000, 10 * 1024)

    def test_small_backups_leave_exactly_backups_plus_one_files(
        self, sink: str, start_method: str, tmp_path: Path
    ) -> None:
        """backups=3 after many rotations: funnel.log and .1 to .3, nothing torn or doubled."""
        path = tmp_path / "funnel.log"
        run_workers(size_funnel(sink, path, 1024, 3), start_method, 4, 200)
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "funnel.log",
            "funnel.log.1",
            "funnel.log.2",
            "funnel.log.3",
        ]
        result = audit(numbered_set(path))
        assert not result.torn
        assert result.doubled() == {}
        assert not result.reordered
        # The newest files are the ones kept: the last record written is among them.
        assert any((w, 199) in result.counts for w in range(4))


def check_time_rotation(
    sink: str, start_method: str, tmp_path: Path, seconds: float, rotations: int
) -> None:
    path = tmp_path / "funnel.log"
    run_workers(time_funnel(sink, path), start_method, 3, 100, seconds, pace=0.0005)
    names = {p.name for p in tmp_path.iterdir()} - {"funnel.log", ".funnel.log.lock"}
    stamp = r"funnel\.log\.\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d"
    assert [n for n in names if not re.fullmatch(stamp, n)] == []
    assert len(names) >= rotations
    result = audit(dated_set(path))
    assert not result.torn
    assert result.doubled() == {}
    assert not result.reordered
    last = {w: max(n for (v, n) in result.counts if v == w) for w in range(3)}
    assert min(last.values()) >= 99
    assert result.missing(3, 0) == []
    assert sum(last.values()) + 3 == len(result.counts)


@pytest.mark.parametrize("sink", ["filename", "handlers", "locked-file-sink"])
class TestTimeRotation:
    def test_a_sink_rotated_every_second_loses_nothing(
        self, sink: str, start_method: str, tmp_path: Path
    ) -> None:
        """3 processes, each logging for over a second: each record once, in its process order."""
        check_time_rotation(sink, start_method, tmp_path, 1.2, 1)

    @pytest.mark.stress
    def test_stress_many_seconds(self, sink: str, start_method: str, tmp_path: Path) -> None:
        """3 processes, each logging for 4 seconds into a file rotated each second: each once."""
        check_time_rotation(sink, start_method, tmp_path, 4.0, 3)
