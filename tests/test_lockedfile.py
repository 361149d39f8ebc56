"""LockedFileHandler: unrelated processes share one file, and rotation loses and doubles nothing."""

from __future__ import annotations

import fcntl
import glob
import logging
import multiprocessing
import os
import re
import signal
import time
import types
from pathlib import Path
from typing import Any

import _strategy_workers as workers
import pytest
from _support import JOIN_TIMEOUT, audit, dated_set, join_all, run_all

import logfunnel
from logfunnel._audit import Audit, numbered_set
from logfunnel._files import _locked

HAS_PROC_LOCKS = os.path.exists("/proc/locks")


def blocked_on_lock(pid: int) -> bool:
    """True when ``pid`` is waiting for a file lock (Linux ``/proc/locks``)."""
    with open("/proc/locks") as locks:
        return any(
            fields[1] == "->" and fields[5] == str(pid)
            for fields in (line.split() for line in locks)
            if len(fields) > 5
        )


def wait_until(condition: Any, timeout: float = 30.0) -> bool:
    """Poll ``condition`` (a state in the kernel, such as /proc/locks) until true or timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return bool(condition())


def lock_file(path: Path) -> Path:
    """Where the handler for ``path`` keeps its lock: hidden, beside the log."""
    return path.parent / f".{path.name}.lock"


def lock_is_free(path: Path) -> bool:
    """Can this process take the exclusive lock right now? (It lets go at once.)"""
    fd = os.open(lock_file(path), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def check_shared_file(
    start_method: str,
    tmp_path: Path,
    *,
    procs: int,
    count: int,
    max_bytes: int,
    backups: int,
    lock_writes: bool = False,
) -> Audit:
    """Run ``procs`` unrelated writers, then check the names and lines of the rotated set."""
    path = tmp_path / "shared.log"
    ctx = multiprocessing.get_context(start_method)
    run_all(
        ctx,
        workers.locked_writer,
        [(str(path), w, count, max_bytes, backups, lock_writes) for w in range(procs)],
    )
    names = {p.name for p in tmp_path.iterdir()} - {"shared.log", ".shared.log.lock"}
    malformed = [name for name in names if not re.fullmatch(r"shared\.log\.[1-9][0-9]*", name)]
    assert malformed == []
    numbers = sorted(int(name.rsplit(".", 1)[1]) for name in names)
    assert numbers == list(range(1, len(numbers) + 1))
    files = numbered_set(path)
    # Writers append at once, so a file may pass the limit by about one record per writer.
    oversized = [f.name for f in files if f.stat().st_size > max_bytes + procs * 200]
    assert oversized == []
    # A file is rotated only once full: one that waited for the lock does not rotate it again.
    underfull = [f.name for f in files[:-1] if f.stat().st_size <= max_bytes - 200]
    assert underfull == []
    result = audit(files)
    assert not result.torn
    assert result.doubled() == {}
    assert not result.reordered
    return result


class TestSharedFileRotation:
    @pytest.mark.parametrize("lock_writes", [False, True], ids=["shared-lock", "lock-every-write"])
    def test_every_record_once_across_seventy_rotations(
        self, start_method: str, tmp_path: Path, lock_writes: bool
    ) -> None:
        """4 processes x 300 records into a 1 KiB file: 70+ rotations, each record once, whole."""
        result = check_shared_file(
            start_method,
            tmp_path,
            procs=4,
            count=300,
            max_bytes=1024,
            backups=10_000,
            lock_writes=lock_writes,
        )
        assert result.missing(4, 300) == []
        assert len(numbered_set(tmp_path / "shared.log")) > 70

    @pytest.mark.stress
    def test_stress_ten_processes_ten_kib(self, start_method: str, tmp_path: Path) -> None:
        """The issue's stress: 10 x 1,000 records, 10 KiB files: 70+ rotations, each record once."""
        result = check_shared_file(
            start_method, tmp_path, procs=10, count=1000, max_bytes=10 * 1024, backups=100_000
        )
        assert result.missing(10, 1000) == []
        assert len(numbered_set(tmp_path / "shared.log")) > 70

    def test_small_backups_leave_exactly_backups_plus_one_files(
        self, start_method: str, tmp_path: Path
    ) -> None:
        """With backups=3, many rotations end with shared.log and .1 to .3, nothing doubled."""
        result = check_shared_file(
            start_method, tmp_path, procs=4, count=200, max_bytes=1024, backups=3
        )
        # The newest files are the ones kept: the last record written is among them.
        assert any((w, 199) in result.counts for w in range(4))
        names = sorted(p.name for p in tmp_path.iterdir())
        assert names == [
            ".shared.log.lock",
            "shared.log",
            "shared.log.1",
            "shared.log.2",
            "shared.log.3",
        ]

    @pytest.mark.stress
    def test_stress_small_backups(self, start_method: str, tmp_path: Path) -> None:
        """10 x 1,000 records, 10 KiB files, backups=5: exactly six files remain."""
        check_shared_file(
            start_method, tmp_path, procs=10, count=1000, max_bytes=10 * 1024, backups=5
        )
        assert len(numbered_set(tmp_path / "shared.log")) == 6


@pytest.mark.skipif(not HAS_PROC_LOCKS, reason="needs /proc/locks to see who waits for a lock")
class TestTheLock:
    def test_rotation_waits_for_a_writer_between_its_check_and_its_write(
        self, start_method: str, tmp_path: Path
    ) -> None:
        """A writer holds off rotation from its "is my file current?" check to its write; other
        writers do not wait for it."""
        path = tmp_path / "shared.log"
        ctx = multiprocessing.get_context(start_method)
        path.write_text(workers.message(50, 0) + "\n" + workers.message(50, 1) + "\n")
        paused, go = ctx.Event(), ctx.Event()
        writer = ctx.Process(target=workers.pause_before_write, args=(str(path), 0, paused, go))
        writer.start()
        assert paused.wait(JOIN_TIMEOUT)
        # Another writer with no rotation due goes straight through.
        run_all(ctx, workers.locked_writer, [(str(path), 1, 3, 1 << 20, 5)])
        # One that must rotate (its limit is 100 bytes) waits for the paused writer.
        rotator = ctx.Process(target=workers.locked_writer, args=(str(path), 2, 3, 100, 5))
        rotator.start()
        assert rotator.pid is not None
        assert wait_until(lambda: blocked_on_lock(rotator.pid))
        assert rotator.exitcode is None
        go.set()
        join_all([writer, rotator])
        assert [writer.exitcode, rotator.exitcode] == [0, 0]
        result = audit(numbered_set(path))
        assert sorted(result.counts.items()) == [
            ((0, 0), 1),
            ((1, 0), 1),
            ((1, 1), 1),
            ((1, 2), 1),
            ((2, 0), 1),
            ((2, 1), 1),
            ((2, 2), 1),
            ((50, 0), 1),
            ((50, 1), 1),
        ]
        assert not result.torn

    def test_a_process_killed_holding_the_lock_blocks_nobody(
        self, start_method: str, tmp_path: Path
    ) -> None:
        """SIGKILL in the middle of a rotation frees the lock: the others go on, losing nothing."""
        path = tmp_path / "shared.log"
        ctx = multiprocessing.get_context(start_method)
        ready, never = ctx.Event(), ctx.Event()
        victim = ctx.Process(target=workers.die_holding_the_lock, args=(str(path), ready, never))
        victim.start()
        assert ready.wait(JOIN_TIMEOUT)
        assert not lock_is_free(path)
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(JOIN_TIMEOUT)
        assert victim.exitcode == -signal.SIGKILL
        run_all(ctx, workers.locked_writer, [(str(path), w, 100, 1024, 100) for w in range(3)])
        result = audit(numbered_set(path))
        assert result.missing(3, 100) == []
        assert result.doubled() == {}
        assert result.counts[(99, 0)] == 1
        assert len(numbered_set(path)) > 5

    @pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
    def test_a_fork_child_takes_the_lock_on_its_own(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A fork child does not share its parent's lock: it waits while the parent holds it."""
        path = tmp_path / "shared.log"
        handler = logfunnel.LockedFileHandler(path, max_bytes=1 << 20, backups=2)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log = logging.getLogger(workers.LOGGER)
        log.addHandler(handler)
        monkeypatch.setattr(log, "level", logging.INFO)
        monkeypatch.setattr(log, "propagate", False)
        try:
            log.info("%s", workers.message(0, 0))
            assert handler._lock_fd is not None
            fcntl.flock(handler._lock_fd, fcntl.LOCK_EX)
            child = multiprocessing.get_context("fork").Process(
                target=workers.inherited_writer, args=(1, 5)
            )
            try:
                child.start()
                assert child.pid is not None
                assert wait_until(lambda: blocked_on_lock(child.pid))
            finally:
                fcntl.flock(handler._lock_fd, fcntl.LOCK_UN)
            child.join(JOIN_TIMEOUT)
            assert child.exitcode == 0
            log.info("%s", workers.message(0, 1))
        finally:
            log.removeHandler(handler)
            handler.close()
        result = audit([path])
        assert sorted(result.counts) == [(0, 0), (0, 1), *((1, n) for n in range(5))]


class TestTimeRotation:
    def test_processes_rotating_every_second_lose_nothing(
        self, start_method: str, tmp_path: Path
    ) -> None:
        """3 processes, each logging for 2 seconds into a file rotated each second: each once."""
        path = tmp_path / "timed.log"
        ctx = multiprocessing.get_context(start_method)
        run_all(ctx, workers.timed_locked_writer, [(str(path), w, 200, 2.1) for w in range(3)])
        names = {p.name for p in tmp_path.iterdir()} - {"timed.log", ".timed.log.lock"}
        stamp = r"timed\.log\.\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d"
        assert [name for name in names if not re.fullmatch(stamp, name)] == []
        assert len(names) >= 2
        result = audit(dated_set(path))
        assert not result.torn
        assert result.doubled() == {}
        assert not result.reordered
        last = {w: max(n for (v, n) in result.counts if v == w) for w in range(3)}
        assert all(last[w] >= 199 for w in range(3))
        assert sum(last.values()) + 3 == len(result.counts)


class FakeClock:
    """``time`` for the handler's module, with a wall clock the test sets."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.module = types.SimpleNamespace(
            time=lambda: self.now,
            gmtime=time.gmtime,
            localtime=time.localtime,
            mktime=time.mktime,
            strftime=time.strftime,
            struct_time=time.struct_time,
        )


def timed_handler(path: Path, **kwargs: Any) -> logfunnel.LockedFileHandler:
    handler = logfunnel.LockedFileHandler(path, when="S", utc=True, **kwargs)
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


def log_at(clock: FakeClock, handler: logging.Handler, timed: list[tuple[float, str]]) -> None:
    """Hand ``handler`` one record per (time, text), with the clock set to that time."""
    for now, text in timed:
        clock.now = now
        handler.handle(logging.LogRecord("timed", logging.INFO, __file__, 1, text, (), None))
    handler.close()


def log_files(directory: Path) -> dict[str, str]:
    """Name and text of every log file in ``directory`` (the lock file aside)."""
    return {p.name: p.read_text() for p in directory.iterdir() if p.suffix != ".lock"}


class TestTimeRotationNames:
    def test_each_file_is_named_for_its_period_and_backups_are_kept(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Records land in the file of their second; backups=2 keeps the two newest periods."""
        clock = FakeClock(1000.5)
        monkeypatch.setattr(_locked, "time", clock.module)
        path = tmp_path / "t.log"
        timed = [(1000.5, "a"), (1001.2, "b"), (1001.7, "c"), (1003.1, "d"), (1004.0, "e")]
        log_at(clock, timed_handler(path, backups=2), timed)
        assert log_files(tmp_path) == {
            "t.log.1970-01-01_00-16-41": "b\nc\n",
            "t.log.1970-01-01_00-16-43": "d\n",
            "t.log": "e\n",
        }

    @pytest.mark.parametrize(
        ("kwargs", "kept"), [({}, 5), ({"backups": 0}, 7)], ids=["default", "backups-0"]
    )
    def test_backups_bound_the_dated_files_and_zero_keeps_them_all(
        self, kwargs: dict[str, int], kept: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Time rotation keeps the five newest periods by default, and every period with
        backups=0."""
        clock = FakeClock(1000.5)
        monkeypatch.setattr(_locked, "time", clock.module)
        path = tmp_path / "t.log"
        log_at(clock, timed_handler(path, **kwargs), [(1000.5 + n, f"s{n}") for n in range(8)])
        dated = {f"t.log.1970-01-01_00-16-{40 + n}": f"s{n}\n" for n in range(7 - kept, 7)}
        assert log_files(tmp_path) == {**dated, "t.log": "s7\n"}

    def test_a_file_from_an_earlier_run_is_named_for_its_last_write(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A file the handler has no note about is rotated by its modification time."""
        path = tmp_path / "t.log"
        path.write_text("old\n")
        os.utime(path, (900.25, 900.25))
        clock = FakeClock(1000.5)
        monkeypatch.setattr(_locked, "time", clock.module)
        log_at(clock, timed_handler(path), [(1000.5, "new")])
        assert (tmp_path / "t.log.1970-01-01_00-15-00").read_text() == "old\n"
        assert path.read_text() == "new\n"

    def test_a_rotated_name_that_exists_is_never_overwritten(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If the name for a period is taken, the file stays current until the next period."""
        clock = FakeClock(1001.5)
        monkeypatch.setattr(_locked, "time", clock.module)
        path = tmp_path / "t.log"
        (tmp_path / "t.log.1970-01-01_00-16-41").write_text("earlier\n")
        log_at(clock, timed_handler(path), [(1001.5, "b"), (1002.5, "d"), (1003.5, "e")])
        assert log_files(tmp_path) == {
            "t.log.1970-01-01_00-16-41": "earlier\n",
            "t.log.1970-01-01_00-16-42": "b\nd\n",
            "t.log": "e\n",
        }

    def test_a_clock_that_steps_back_does_not_rotate_backwards(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A record logged after the clock stepped back joins the current file; names only grow."""
        clock = FakeClock(1000.5)
        monkeypatch.setattr(_locked, "time", clock.module)
        path = tmp_path / "t.log"
        log_at(
            clock, timed_handler(path), [(1000.5, "a"), (1001.5, "b"), (1000.2, "c"), (1002.5, "d")]
        )
        assert log_files(tmp_path) == {
            "t.log.1970-01-01_00-16-40": "a\n",
            "t.log.1970-01-01_00-16-41": "b\nc\n",
            "t.log": "d\n",
        }

    @pytest.mark.parametrize(
        ("when", "interval", "t", "start", "end"),
        [
            ("S", 1, 1000.5, 1000.0, 1001.0),
            ("S", 10, 1005.0, 1000.0, 1010.0),
            ("M", 1, 3599.0, 3540.0, 3600.0),
            ("H", 2, 3 * 3600 + 5, 2 * 3600, 4 * 3600),
            ("D", 1, 86400 * 3.5, 86400 * 3, 86400 * 4),
            ("midnight", 1, 86400 * 3.5, 86400 * 3, 86400 * 4),
            # 1970-01-05 was a Monday (W0), 1970-01-01 a Thursday (W3).
            ("W0", 1, 86400 * 6.5, 86400 * 4, 86400 * 11),
            ("W3", 1, 86400 * 6.5, 0, 86400 * 7),
        ],
    )
    def test_periods_are_aligned_to_the_clock(
        self, when: str, interval: int, t: float, start: float, end: float
    ) -> None:
        """Every process computes the same boundaries, whenever it started."""
        schedule = _locked._Schedule(when, interval, utc=True)
        assert (schedule.start(t), schedule.next(schedule.start(t))) == (start, end)

    @pytest.mark.parametrize("when", ["X", "W7", "second"])
    def test_unknown_units_are_refused(self, when: str, tmp_path: Path) -> None:
        """A unit the schedule does not know is an error, not a silent default."""
        with pytest.raises(ValueError, match="invalid rotation interval"):
            logfunnel.LockedFileHandler(tmp_path / "t.log", when=when)


class TestInOneProcess:
    def test_records_are_whole_lines_and_bad_text_stays_readable(self, tmp_path: Path) -> None:
        """Multi-line messages, astral characters and lone surrogates are written whole."""
        path = tmp_path / "one.log"
        handler = logfunnel.LockedFileHandler(path)
        handler.setFormatter(logging.Formatter("%(message)s"))
        record = logging.LogRecord(
            "x", logging.INFO, __file__, 1, "a\nb \U0001d11e \ud800", (), None
        )
        handler.handle(record)
        handler.close()
        assert path.read_bytes() == "a\nb \U0001d11e \\ud800\n".encode()

    def test_max_bytes_alone_rotates_and_keeps_five_backups(self, tmp_path: Path) -> None:
        """Given only max_bytes, the file rotates and the five newest backups are kept."""
        path = tmp_path / "one.log"
        handler = logfunnel.LockedFileHandler(path, max_bytes=1)
        handler.setFormatter(logging.Formatter("%(message)s"))
        for n in range(8):  # max_bytes=1: every record after the first rotates the file
            handler.handle(logging.LogRecord("x", logging.INFO, __file__, 1, f"r{n}", (), None))
        handler.close()
        assert log_files(tmp_path) == {
            "one.log": "r7\n",
            "one.log.1": "r6\n",
            "one.log.2": "r5\n",
            "one.log.3": "r4\n",
            "one.log.4": "r3\n",
            "one.log.5": "r2\n",
        }

    def test_max_bytes_with_backups_zero_is_refused(self, tmp_path: Path) -> None:
        """max_bytes with backups=0 raises a ValueError saying what to pass, instead of never
        rotating."""
        with pytest.raises(ValueError, match=r"backups=0 would never rotate: give backups=1"):
            logfunnel.LockedFileHandler(tmp_path / "one.log", max_bytes=10, backups=0)
        assert list(tmp_path.iterdir()) == []

    def test_the_lock_file_is_hidden_beside_the_log_and_never_rotated(self, tmp_path: Path) -> None:
        """The lock is .NAME.lock in the log's directory: outside NAME* and *.log*, never moved."""
        path = tmp_path / "one.log"
        handler = logfunnel.LockedFileHandler(path, max_bytes=1, backups=2)
        handler.setFormatter(logging.Formatter("%(message)s"))
        assert handler.lock_path == str(lock_file(path))
        inode = lock_file(path).stat().st_ino
        for n in range(5):
            handler.handle(logging.LogRecord("x", logging.INFO, __file__, 1, f"r{n}", (), None))
        handler.close()
        assert lock_file(path).stat().st_ino == inode
        rotated_set = [str(path), f"{path}.1", f"{path}.2"]
        assert sorted(glob.glob(f"{path}*")) == rotated_set
        assert sorted(glob.glob(str(tmp_path / "*.log*"))) == rotated_set

    def test_a_file_removed_from_under_the_handler_is_created_again(self, tmp_path: Path) -> None:
        """Like WatchedFileHandler: a file deleted or moved by someone else is reopened by path."""
        path = tmp_path / "one.log"
        handler = logfunnel.LockedFileHandler(path)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.handle(logging.LogRecord("x", logging.INFO, __file__, 1, "first", (), None))
        path.rename(tmp_path / "moved.log")
        handler.handle(logging.LogRecord("x", logging.INFO, __file__, 1, "second", (), None))
        handler.close()
        assert (tmp_path / "moved.log").read_text() == "first\n"
        assert path.read_text() == "second\n"

    @pytest.mark.parametrize(
        ("kwargs", "error"),
        [
            ({"max_bytes": -1}, "negative"),
            ({"backups": -1}, "negative"),
            ({"max_bytes": 10, "backups": 1, "when": "S"}, "not both"),
        ],
    )
    def test_contradictory_settings_are_refused(
        self, kwargs: dict[str, Any], error: str, tmp_path: Path
    ) -> None:
        """Negative sizes, or size and time rotation together, raise ValueError."""
        with pytest.raises(ValueError, match=error):
            logfunnel.LockedFileHandler(tmp_path / "x.log", **kwargs)

    def test_is_an_ordinary_handler_for_dictconfig(self, tmp_path: Path) -> None:
        """dictConfig can build it by class name with keyword arguments."""
        import logging.config

        path = tmp_path / "dc.log"
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {
                    "shared": {
                        "class": "logfunnel.LockedFileHandler",
                        "path": str(path),
                        "max_bytes": 1000,
                        "backups": 2,
                    }
                },
                "loggers": {"dc": {"handlers": ["shared"], "level": "INFO", "propagate": False}},
            }
        )
        log = logging.getLogger("dc")
        log.info("hello")
        handler = log.handlers[0]
        log.removeHandler(handler)
        handler.close()
        assert path.read_text() == "hello\n"
