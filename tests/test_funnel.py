"""The core promise: one funnel for every process and start method, with nothing lost."""

from __future__ import annotations

import concurrent.futures
import logging
import logging.handlers
import multiprocessing
import os
import pickle
import re
import socket
import stat
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

import _workers
import pytest
from _support import JOIN_TIMEOUT, Records, join_all, read_lines

import logfunnel
from logfunnel._audit import numbered_set


def task_records(capture: Records) -> dict[tuple[int, int], int]:
    counts: dict[tuple[int, int], int] = {}
    for message in capture.messages():
        match = re.fullmatch(r"task (\d+) record (\d+)", message)
        if match:
            key = (int(match.group(1)), int(match.group(2)))
            counts[key] = counts.get(key, 0) + 1
    return counts


def assert_all_once(capture: Records, tasks: int, count: int) -> None:
    counts = task_records(capture)
    expected = {(t, n) for t in range(tasks) for n in range(count)}
    missing = expected - counts.keys()
    doubled = {key: c for key, c in counts.items() if c > 1}
    assert (len(missing), doubled) == (0, {}), f"missing {sorted(missing)[:5]}..."


class TestTheIssueProgram:
    def test_two_hundred_records_in_the_rotated_file_set(
        self, start_method: str, tmp_path: Path
    ) -> None:
        """The stdlib cookbook program, minus its boilerplate: 200 records, once each, in order."""
        path = tmp_path / "mptest4.log"
        file_handler = logging.handlers.RotatingFileHandler(path, "a", 3000, 5)
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(processName)-10s %(levelname)-8s %(message)s")
        )
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(processName)s %(message)s"))
        with logfunnel.Funnel(handlers=[file_handler, console]) as funnel:
            ctx = funnel.context(start_method)
            procs = [ctx.Process(target=_workers.steps, args=(i,)) for i in range(10)]
            for proc in procs:
                proc.start()
            join_all(procs)
            with ctx.Pool(4) as pool:
                pool.map(_workers.steps, range(10, 20))
        lines = read_lines(numbered_set(path))
        seen: dict[tuple[int, int], int] = {}
        last: dict[tuple[str, int], int] = {}
        for line in lines:
            match = re.search(r"^\S+ \S+ (\S+)\s+INFO\s+worker (\d+) step (\d+)$", line)
            assert match, f"unexpected line {line!r}"
            who, worker, step = match.group(1), int(match.group(2)), int(match.group(3))
            seen[(worker, step)] = seen.get((worker, step), 0) + 1
            assert step > last.get((who, worker), -1), f"out of order: {line!r}"
            last[(who, worker)] = step
        assert sorted(seen) == [(w, s) for w in range(20) for s in range(10)]
        assert set(seen.values()) == {1}


class TestNothingLost:
    def test_pool_with_block_terminate_loses_nothing(self, start_method: str) -> None:
        """Tasks that log right before returning keep every record through terminate()."""
        capture = Records()
        with (
            logfunnel.Funnel(handlers=[capture]) as funnel,
            funnel.context(start_method).Pool(8) as pool,
        ):
            pool.starmap(_workers.steps_returning, [(t, 1000) for t in range(8)])
        assert_all_once(capture, 8, 1000)

    def test_os_exit_after_logging(self, start_method: str) -> None:
        """A worker that leaves with os._exit has already delivered what it logged."""
        capture = Records()
        with logfunnel.Funnel(handlers=[capture]) as funnel:
            ctx = funnel.context(start_method)
            procs = [ctx.Process(target=_workers.exit_hard, args=(t, 500)) for t in range(3)]
            for proc in procs:
                proc.start()
            join_all(procs)
        assert [p.exitcode for p in procs] == [1, 1, 1]
        assert_all_once(capture, 3, 500)

    def test_sigkill_after_logging_calls_returned(self, start_method: str) -> None:
        """SIGKILL right after the logging calls returned loses none of those records."""
        capture = Records()
        with logfunnel.Funnel(handlers=[capture]) as funnel:
            ctx = funnel.context(start_method)
            logged, never = ctx.Event(), ctx.Event()
            proc = ctx.Process(target=_workers.wait_for_kill, args=(0, 2000, logged, never))
            proc.start()
            assert logged.wait(JOIN_TIMEOUT)
            proc.kill()
            join_all([proc])
        assert proc.exitcode == -9
        assert_all_once(capture, 1, 2000)

    def test_raising_worker_keeps_its_records_and_logs_its_crash(self, start_method: str) -> None:
        """Records before an uncaught exception arrive, and so does the crash with its traceback."""
        capture = Records()
        with logfunnel.Funnel(handlers=[capture]) as funnel:
            proc = funnel.context(start_method).Process(target=_workers.raise_after, args=(0, 300))
            proc.start()
            join_all([proc])
        assert proc.exitcode == 1
        assert_all_once(capture, 1, 300)
        crashes = [
            r for r in capture.records if r.name == "logfunnel" and r.levelno == logging.ERROR
        ]
        assert len(crashes) == 1
        # As in one process: the exception itself, which the sink's formatter formats.
        assert crashes[0].exc_info is not None
        text = logging.Formatter().formatException(crashes[0].exc_info)
        assert "RuntimeError: worker 0 failed on purpose" in text

    def test_stop_drains_what_was_sent(self, start_method: str) -> None:
        """Records already sent when stop() is called are all written before it returns."""
        capture = Records()
        funnel = logfunnel.Funnel(handlers=[capture]).start()
        proc = funnel.context(start_method).Process(target=_workers.exit_hard, args=(0, 3000))
        proc.start()
        join_all([proc])
        funnel.stop()
        assert_all_once(capture, 1, 3000)


class TestNothingTornOrDoubled:
    def test_multiline_and_64k_records_arrive_whole_once(self, start_method: str) -> None:
        """8 processes x 5,000 records, multi-line and 64 KiB ones mixed in: each whole, once."""
        capture = Records()
        workers, count = 8, 5000
        with logfunnel.Funnel(handlers=[capture]) as funnel:
            ctx = funnel.context(start_method)
            procs = [
                ctx.Process(target=_workers.many_mixed, args=(w, count)) for w in range(workers)
            ]
            for proc in procs:
                proc.start()
            join_all(procs)
        by_process: dict[int, list[str]] = {}
        for record in capture.records:
            if record.name == "worker":
                by_process.setdefault(record.process or 0, []).append(record.getMessage())
        received = sorted(by_process.values(), key=lambda msgs: msgs[0])
        expected = sorted(
            ([_workers.torn_message(w, n) for n in range(count)] for w in range(workers)),
            key=lambda msgs: msgs[0],
        )
        assert len(received) == workers
        for got, want in zip(received, expected, strict=True):
            assert got == want  # whole, once, and in the order each process sent them


class TestAttach:
    def test_pool_initializer_attach(self, start_method: str) -> None:
        """A plain multiprocessing Pool attaches through initializer=attach."""
        capture = Records()
        with logfunnel.Funnel(handlers=[capture]) as funnel:
            ctx = multiprocessing.get_context(start_method)
            with ctx.Pool(2, initializer=logfunnel.attach, initargs=(funnel.address,)) as pool:
                pool.starmap(_workers.steps_returning, [(t, 200) for t in range(4)])
        assert_all_once(capture, 4, 200)

    def test_process_pool_executor_initializer(self, start_method: str) -> None:
        """ProcessPoolExecutor attaches through initializer=attach."""
        capture = Records()
        with logfunnel.Funnel(handlers=[capture]) as funnel:  # noqa: SIM117 - the pool needs the address
            with concurrent.futures.ProcessPoolExecutor(
                2,
                mp_context=multiprocessing.get_context(start_method),
                initializer=logfunnel.attach,
                initargs=(funnel.address,),
            ) as pool:
                list(pool.map(_workers.steps_returning, range(4), [200] * 4))
        assert_all_once(capture, 4, 200)

    def test_process_pool_executor_with_funnel_context(self, start_method: str) -> None:
        """ProcessPoolExecutor(mp_context=funnel.context()) needs no initializer."""
        capture = Records()
        with logfunnel.Funnel(handlers=[capture]) as funnel:
            ctx = funnel.context(start_method)
            with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
                list(pool.map(_workers.steps_returning, range(4), [200] * 4))
        assert_all_once(capture, 4, 200)

    def test_attach_twice_does_not_double(self, start_method: str) -> None:
        """Calling attach() twice in a child sends each record once."""
        capture = Records()
        with logfunnel.Funnel(handlers=[capture]) as funnel:
            ctx = multiprocessing.get_context(start_method)
            proc = ctx.Process(target=_workers.attach_then_steps, args=(funnel.address, 0, 100))
            proc.start()
            join_all([proc])
        assert_all_once(capture, 1, 100)

    def test_fork_child_of_attached_process_connects_on_its_own(self, start_method: str) -> None:
        """A grandchild made by os.fork connects on its own; the parent's stream stays intact."""
        capture = Records()
        with logfunnel.Funnel(handlers=[capture]) as funnel:
            proc = funnel.context(start_method).Process(target=_workers.forks_a_grandchild)
            proc.start()
            join_all([proc])
            stats = funnel.stats
        messages = capture.messages()
        grandchild = [r for r in capture.records if r.getMessage().startswith("grandchild")]
        assert len(grandchild) == 1
        assert grandchild[0].process == int(grandchild[0].getMessage().split()[1])
        assert grandchild[0].process != proc.pid
        assert messages.index("child before fork") < messages.index("child after fork")
        assert (stats.gaps, stats.bad_connections, stats.partial_frames) == (0, 0, 0)

    def test_main_process_is_attached_while_running(self) -> None:
        """The parent's own records reach the sinks, and its root logger is restored afterwards."""
        capture = Records()
        root = logging.getLogger()
        before = (root.handlers[:], root.level)
        with logfunnel.Funnel(handlers=[capture]):
            logging.getLogger("worker").warning("from the parent")
            assert root.handlers == [logfunnel.attached()]
        assert capture.messages() == ["from the parent"]
        assert (root.handlers, root.level) == before

    def test_detach_and_attach_again_is_no_gap(self) -> None:
        """A new handler in the same process starts its own count: no false gap reported."""
        capture = Records()
        with logfunnel.Funnel(handlers=[capture]) as funnel:
            assert funnel._collector is not None
            for number in range(3):
                logging.getLogger("worker").warning("round %d", number)
                logfunnel.detach()
                # The collector has seen this connection end before the next begins.
                assert funnel._collector.wait_idle(30)
                logfunnel.attach(funnel.address)
            stats = funnel.stats
        assert capture.messages() == ["round 0", "round 1", "round 2"]
        assert stats.gaps == 0

    def test_attach_to_nothing_fails_fast(self, tmp_path: Path) -> None:
        """attach() where no collector listens raises AttachError at once, not a hang."""
        started = time.monotonic()
        with pytest.raises(logfunnel.AttachError, match="no logfunnel collector"):
            logfunnel.attach(f"unix:{tmp_path / 'nothing.sock'}")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with pytest.raises(logfunnel.AttachError):
            logfunnel.attach(f"tcp://127.0.0.1:{port}?key=00")
        assert time.monotonic() - started < 5

    def test_attach_to_a_silent_listener_times_out(self) -> None:
        """A listener that never answers the handshake gives AttachError within the timeout."""
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen()
            port = silent.getsockname()[1]
            started = time.monotonic()
            with pytest.raises(logfunnel.AttachError, match="did not answer"):
                logfunnel.attach(f"tcp://127.0.0.1:{port}?key=00", timeout=0.5)
            assert time.monotonic() - started < 5

    def test_bad_addresses_are_clear_errors(self) -> None:
        """A malformed address is a ValueError that says what an address looks like."""
        for text in ["", "udp://x:1", "tcp://nohost", "unix:"]:
            with pytest.raises(ValueError, match="address"):
                logfunnel.attach(text)


class TestRecords:
    def test_standard_attributes_and_extra_survive(self, start_method: str) -> None:
        """Process, thread, location, exception, stack and extra fields all reach the sink."""
        capture = Records()
        formatter = logging.Formatter(
            "%(user)s|%(processName)s|%(funcName)s|%(levelname)s|%(message)s"
        )
        with logfunnel.Funnel(handlers=[capture]) as funnel:
            proc = funnel.context(start_method).Process(
                target=_workers.record_attributes, name="attrs-child"
            )
            proc.start()
            join_all([proc])
        (record,) = [r for r in capture.records if r.name == "worker"]
        assert record.processName == "attrs-child"
        assert record.process == proc.pid
        assert record.threadName == "MainThread"
        assert isinstance(record.thread, int)
        assert record.thread != 0
        assert (record.levelname, record.levelno) == ("ERROR", logging.ERROR)
        assert record.pathname == _workers.__file__
        assert record.filename == "_workers.py"
        assert record.module == "_workers"
        assert record.funcName == "record_attributes"
        assert record.lineno > 0
        assert record.created == pytest.approx(time.time(), abs=60)
        assert 0 <= record.msecs < 1000
        assert record.exc_info is not None
        assert "KeyError: 'boom'" in logging.Formatter().formatException(record.exc_info)
        assert record.stack_info is not None
        assert record.stack_info.startswith("Stack (most recent call last)")
        text = formatter.format(record)
        assert text.startswith("alice|attrs-child|record_attributes|ERROR|failed for alice\n")
        assert "Traceback (most recent call last)" in text

    def test_worker_side_level_filters_before_sending(self, start_method: str) -> None:
        """Records below every sink's level are not sent; the root level stays the parent's."""
        capture = Records(logging.WARNING)
        with logfunnel.Funnel(handlers=[capture]) as funnel:
            ctx = funnel.context(start_method)
            with ctx.Pool(1) as pool:
                levels = pool.apply(_workers.root_and_handler_level)
                pool.apply(_workers.levels)
            stats = funnel.stats
        assert levels == (logging.DEBUG, logging.WARNING)
        assert capture.messages() == ["warning record", "error record"]
        assert stats.records == 2

    def test_root_handlers_are_the_default_sinks(self, start_method: str) -> None:
        """After basicConfig-style set-up, Funnel() uses the root logger's handlers and level."""
        capture = Records()
        root = logging.getLogger()
        root.handlers[:] = [capture]
        root.setLevel(logging.INFO)
        with logfunnel.Funnel() as funnel:
            assert funnel.sinks == (capture,)
            with funnel.context(start_method).Pool(1) as pool:
                pool.apply(_workers.levels)
        assert capture.messages() == ["info record", "warning record", "error record"]
        assert root.handlers == [capture]

    def test_a_dictconfig_applied_here_gives_the_sinks_beside_the_shortcuts(
        self, start_method: str, tmp_path: Path
    ) -> None:
        """config= with the thread collector is dictConfig in this process at start: its root
        handlers and the file shortcut are the sinks, its root level reaches workers, and the
        configuration stays after stop()."""
        config = {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"kept": {"()": "_support.Records"}},
            "root": {"handlers": ["kept"], "level": "WARNING"},
        }
        path = tmp_path / "shortcut.log"
        funnel = logfunnel.Funnel(path, config=config, fmt="%(message)s")
        assert funnel.sinks == ()  # made at start, after the configuration
        with funnel:
            (kept,) = [sink for sink in funnel.sinks if isinstance(sink, Records)]
            assert len(funnel.sinks) == 2
            with funnel.context(start_method).Pool(1) as pool:
                pool.apply(_workers.levels)
        assert kept.messages() == ["warning record", "error record"]
        assert path.read_text().splitlines() == ["warning record", "error record"]
        root = logging.getLogger()
        assert root.handlers == [kept]
        assert root.level == logging.WARNING

    def test_a_dictconfig_here_refuses_handler_objects(self) -> None:
        """config= and handlers= together are refused: dictConfig would close the handlers."""
        with pytest.raises(TypeError, match="cannot go with handlers"):
            logfunnel.Funnel(handlers=[Records()], config={"version": 1})


class TestBadInput:
    def test_bad_input_arrives_readable(
        self, start_method: str, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """Unpicklable, broken, surrogate, 10 MiB and odd-extra records all arrive readable."""
        capture = Records()
        with logfunnel.Funnel(handlers=[capture]) as funnel:
            proc = funnel.context(start_method).Process(target=_workers.bad_inputs)
            proc.start()
            join_all([proc])
        assert proc.exitcode == 0
        records = [r for r in capture.records if r.name == "worker"]
        messages = [r.getMessage() for r in records]
        assert len(messages) == 6
        assert messages[0] == "unpicklable unpicklable-but-printable"
        assert messages[1].startswith("'broken str %s' % (<unrepresentable BrokenStr")
        assert "could not be formatted: ValueError: no str for you" in messages[1]
        assert messages[2] == "lone surrogate \\ud800 here"
        assert messages[3] == "huge " + "h" * (10 * 1024 * 1024)
        odd = records[4]
        assert odd.obj.startswith("<object object at")  # type: ignore[attr-defined]
        assert odd.numbers == "{1, 2}"  # type: ignore[attr-defined]
        assert odd.nested == {"a": [1, None]}  # type: ignore[attr-defined]
        assert messages[5] == "done with bad inputs"
        assert "Logging error" not in capfd.readouterr().err


class TestPrivacy:
    def test_local_socket_is_in_a_private_directory(self) -> None:
        """On POSIX the socket lives in a 0700 directory, removed at stop."""
        with logfunnel.Funnel(handlers=[Records()]) as funnel:
            assert funnel.address.startswith("unix:")
            directory = Path(funnel.address[len("unix:") :]).parent
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700
            assert directory.stat().st_uid == os.getuid()
        assert not directory.exists()

    def test_a_pickle_on_the_wire_is_bad_input_not_code(self, tmp_path: Path) -> None:
        """A pickle sent as a frame is never unpickled: the connection is closed, others go on."""
        capture = Records()
        marker = tmp_path / "pwned"

        class Exploit:
            def __reduce__(self) -> tuple[Any, ...]:
                return (Path.touch, (marker,))

        payload = pickle.dumps(Exploit())
        with logfunnel.Funnel(handlers=[capture]) as funnel:
            path = funnel.address[len("unix:") :]
            for body in (payload, bytes([1]) + payload, bytes([3]) + payload):
                with socket.socket(socket.AF_UNIX) as evil:
                    evil.connect(path)
                    evil.sendall(struct.pack("<I", len(body)) + body)
                    evil.shutdown(socket.SHUT_WR)
                    assert evil.recv(1) == b""  # the collector hangs up
            logging.getLogger("worker").warning("still serving")
            stats = funnel.stats
        assert not marker.exists()
        assert stats.bad_connections == 3
        assert "still serving" in capture.messages()
        errors = [r.getMessage() for r in capture.records if r.name == "logfunnel"]
        assert len(errors) == 3
        assert all(e.startswith("logfunnel: closed connection") for e in errors)

    def test_tcp_peer_with_wrong_key_is_refused(self) -> None:
        """Over TCP a peer without the key is dropped before any record is read."""
        capture = Records()
        with logfunnel.Funnel(handlers=[capture], listen="tcp://127.0.0.1:0") as funnel:
            assert "?key=" in funnel.address
            wrong = re.sub(r"key=[0-9a-f]+", "key=" + "00" * 32, funnel.address)
            with pytest.raises(logfunnel.AttachError, match=r"handshake|authentication|closed"):
                logfunnel.FunnelHandler(wrong, timeout=5).connect()
            handler = logfunnel.FunnelHandler(funnel.address)
            handler.handle(
                logging.LogRecord("worker", logging.WARNING, "f", 1, "by key", None, None)
            )
            handler.close()
        assert "by key" in capture.messages()


class TestLifecycle:
    def test_stop_is_idempotent_and_start_is_once(self) -> None:
        """stop() twice is harmless; a second start() raises."""
        funnel = logfunnel.Funnel(handlers=[Records()])
        with pytest.raises(RuntimeError, match="start"):
            _ = funnel.address
        funnel.start()
        with pytest.raises(RuntimeError, match="once"):
            funnel.start()
        funnel.stop()
        funnel.stop()
        assert not funnel.running

    def test_shortcut_sinks_rotate_and_close(self, tmp_path: Path) -> None:
        """Funnel(path, max_bytes=..., backups=...) writes a size-rotated set and closes it."""
        path = tmp_path / "app.log"
        with logfunnel.Funnel(path, max_bytes=2000, backups=50) as funnel:
            for number in range(200):
                logging.getLogger("worker").warning("record %d", number)
            (sink,) = funnel.sinks
        assert isinstance(sink, logging.handlers.RotatingFileHandler)
        assert sink.stream is None  # closed
        files = sorted(tmp_path.glob("app.log*"))
        assert len(files) > 5
        numbers = [int(m) for f in files for m in re.findall(r"record (\d+)", f.read_text())]
        assert sorted(numbers) == list(range(200))

    def test_threads_of_one_process_keep_their_order(self) -> None:
        """Records of each thread arrive in the order that thread logged them."""
        capture = Records()
        with logfunnel.Funnel(handlers=[capture]):

            def run(index: int) -> None:
                for number in range(2000):
                    logging.getLogger("worker").warning("task %d record %d", index, number)

            threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(JOIN_TIMEOUT)
        for task in range(4):
            ordered = [
                int(m.split()[3]) for m in capture.messages() if m.startswith(f"task {task} ")
            ]
            assert ordered == list(range(2000))
        assert_all_once(capture, 4, 2000)
