"""Faults: producers that die mid-record or fork mid-call, a collector that goes away or
outlives its parent, and sinks that block or fail."""

from __future__ import annotations

import errno
import logging
import os
import re
import select
import signal
import socket
import threading
from pathlib import Path

import _hardening_workers as hw
import pytest
from _support import FORCED_TCP, JOIN_TIMEOUT, FileRecords, Records, join_all

import logfunnel
from logfunnel._protocol._codec import KIND_HELLO, PROTOCOL_VERSION, encode_json
from logfunnel._sinks import _guard


@pytest.fixture(params=["records", "lines"])
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> Records | FileRecords:
    """A record sink (frames on the wire) or a file sink (bare lines on the wire)."""
    return Records() if request.param == "records" else FileRecords(tmp_path / "app.log")


def sinks_of(sink: Records | FileRecords) -> list[logging.Handler]:
    return [sink.handler if isinstance(sink, FileRecords) else sink]


def assert_mode(sink: Records | FileRecords) -> None:
    """The running funnel uses the wire mode ``sink`` stands for: frames, or bare lines."""
    handler = logfunnel.attached()
    assert handler is not None
    assert (handler.config["lines"] is not None) == isinstance(sink, FileRecords)


def numbers_by_producer(messages: list[str]) -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for message in messages:
        match = re.match(r"p(\d+) n(\d+)$", message)
        if match:
            found.setdefault(int(match.group(1)), []).append(int(match.group(2)))
    return found


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait for a process that is not our child to end (pidfd: no polling, no sleep)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(pidfd)


class TestProducerDeath:
    def test_sigkill_mid_frame_spares_the_other_producers(
        self, start_method: str, sink: Records | FileRecords
    ) -> None:
        """A producer killed half-way through a frame (or a line) costs only that record,
        counted and logged."""
        capture = sink
        with logfunnel.Funnel(handlers=sinks_of(sink)) as funnel:
            ctx = funnel.context(start_method)
            steady = [ctx.Process(target=hw.numbered, args=(i, 3000)) for i in range(3)]
            torn = ctx.Process(target=hw.kill_self_after_cut, args=(-7,))
            for proc in [*steady, torn]:
                proc.start()
            join_all([*steady, torn])
            stats = funnel.stats
        assert torn.exitcode == -signal.SIGKILL
        assert numbers_by_producer(capture.messages()) == {i: list(range(3000)) for i in range(3)}
        assert "before the torn frame" in capture.messages()
        assert "torn" not in capture.messages()
        assert (stats.partial_frames, stats.bad_connections, stats.gaps) == (1, 0, 0)
        (warning,) = capture.own(logging.WARNING)
        unit = "line" if isinstance(sink, FileRecords) else "frame"
        assert re.fullmatch(
            rf"logfunnel: pid \d+ on \S+ ended inside a {unit}; "
            r"discarded \d+ partial bytes",
            warning,
        )

    @pytest.mark.parametrize("cut", [1, 4, 5, 60, -1], ids=lambda c: f"cut{c}")
    def test_every_cut_point_of_a_frame(
        self, start_method: str, cut: int, sink: Records | FileRecords
    ) -> None:
        """Death after 1, 4, 5 (a frame header), 60 or all-but-one bytes of a frame or a
        line: one partial record, counted."""
        capture = sink
        with logfunnel.Funnel(handlers=sinks_of(sink)) as funnel:
            ctx = funnel.context(start_method)
            steady = ctx.Process(target=hw.numbered, args=(0, 1000))
            torn = ctx.Process(target=hw.kill_self_after_cut, args=(cut,))
            for proc in (steady, torn):
                proc.start()
            join_all([steady, torn])
            stats = funnel.stats
        assert numbers_by_producer(capture.messages()) == {0: list(range(1000))}
        assert (stats.partial_frames, stats.bad_connections) == (1, 0)

    @pytest.mark.skipif(FORCED_TCP, reason="cuts a Unix-socket hello by hand")
    @pytest.mark.parametrize("cut", [3, 20], ids=lambda c: f"cut{c}")
    def test_death_inside_the_handshake(
        self, start_method: str, cut: int, sink: Records | FileRecords
    ) -> None:
        """A producer killed half-way through its hello is counted and hurts nobody, with
        frames or lines to follow."""
        capture = sink
        with logfunnel.Funnel(handlers=sinks_of(sink)) as funnel:
            assert_mode(sink)
            ctx = funnel.context(start_method)
            torn = ctx.Process(target=hw.kill_self_inside_hello, args=(funnel.address, cut))
            torn.start()
            join_all([torn])
            steady = ctx.Process(target=hw.numbered, args=(0, 500))
            steady.start()
            join_all([steady])
            stats = funnel.stats
        assert numbers_by_producer(capture.messages()) == {0: list(range(500))}
        assert (stats.partial_frames, stats.bad_connections) == (1, 0)

    def test_producer_gone_before_reading_its_handshake_answer(
        self, sink: Records | FileRecords
    ) -> None:
        """A peer that says hello and vanishes before the answer (frames or lines) costs the
        collector nothing."""
        capture = sink
        with logfunnel.Funnel(handlers=sinks_of(sink)) as funnel:
            assert_mode(sink)
            path = funnel.address[len("unix:") :]
            hello = encode_json(
                KIND_HELLO, {"v": PROTOCOL_VERSION, "host": "h", "pid": 1, "start": 1.0}
            )
            for _ in range(20):
                with socket.socket(socket.AF_UNIX) as gone:
                    gone.connect(path)
                    gone.sendall(hello)
                    # SO_LINGER 0: the socket is reset, as when a process is killed.
                    gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            logging.getLogger("worker").warning("still serving")
            stats = funnel.stats
            running = funnel.running
        assert running
        assert capture.messages() == ["still serving"]
        assert (stats.internal_errors, stats.bad_connections) == (0, 0)
        assert capture.own(logging.ERROR) == []

    def test_random_sigkill_while_streaming_big_frames(
        self, start_method: str, sink: Records | FileRecords
    ) -> None:
        """SIGKILL at an arbitrary point of 200 KiB frames: a whole, gap-free prefix arrives.

        In line mode such records are frames behind a NUL byte, among the lines."""
        capture = sink
        with logfunnel.Funnel(handlers=sinks_of(sink)) as funnel:
            ctx = funnel.context(start_method)
            logged = ctx.Event()
            victim = ctx.Process(target=hw.big_records_until_killed, args=(logged, 50))
            steady = ctx.Process(target=hw.numbered, args=(0, 2000))
            victim.start()
            steady.start()
            assert logged.wait(JOIN_TIMEOUT)
            victim.kill()
            join_all([victim, steady])
            stats = funnel.stats
        big = [m for m in capture.messages() if m.startswith("big ")]
        numbers = [int(m.split()[1][1:]) for m in big]
        assert numbers == list(range(len(numbers)))
        assert len(numbers) >= 50
        sizes = {len(m) - len(f"big n{n} ") for m, n in zip(big, numbers, strict=True)}
        assert sizes == {200 * 1024}
        assert numbers_by_producer(capture.messages()) == {0: list(range(2000))}
        assert stats.partial_frames <= 1
        assert (stats.bad_connections, stats.gaps) == (0, 0)


class TestForkWhileLogging:
    def test_fork_while_another_thread_is_mid_frame(
        self, start_method: str, sink: Records | FileRecords
    ) -> None:
        """200 forks, each while another thread holds the handler half-way through a frame
        (or a line)."""
        capture = sink
        rounds = 200
        with logfunnel.Funnel(handlers=sinks_of(sink)) as funnel:
            proc = funnel.context(start_method).Process(
                target=hw.fork_while_logging, args=(rounds,)
            )
            proc.start()
            join_all([proc])
            stats = funnel.stats
        assert proc.exitcode == 0
        messages = capture.messages()
        assert [m for m in messages if m.startswith("parent thread")] == [
            f"parent thread n{n}" for n in range(rounds)
        ]
        assert sorted(m for m in messages if m.startswith("fork child")) == sorted(
            f"fork child n{n}" for n in range(rounds)
        )
        assert (stats.bad_connections, stats.partial_frames, stats.gaps) == (0, 0, 0)

    def test_fork_while_another_thread_is_inside_attach(self, start_method: str) -> None:
        """A fork child can attach although a parent thread held attach()'s lock at the fork."""
        capture = Records()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with logfunnel.Funnel(handlers=[capture]) as funnel:
            proc = funnel.context(start_method).Process(
                target=hw.fork_while_attaching, args=(port,)
            )
            proc.start()
            join_all([proc])
        assert proc.exitcode == 0
        assert capture.messages() == ["fork child attached while its parent was attaching"]


class TestCollectorGone:
    def test_records_after_stop_go_to_stderr_with_a_count(
        self, start_method: str, tmp_path: Path
    ) -> None:
        """Records logged after the collector stopped are written to stderr and counted."""
        capture = Records()
        err = tmp_path / "child.err"
        funnel = logfunnel.Funnel(handlers=[capture]).start()
        ctx = funnel.context(start_method)
        stopped, go = ctx.Event(), ctx.Event()
        proc = ctx.Process(target=hw.log_after_collector_stops, args=(str(err), stopped, 25, go))
        proc.start()
        assert go.wait(JOIN_TIMEOUT)
        funnel.stop()
        stopped.set()
        join_all([proc])
        assert proc.exitcode == 0
        assert capture.messages() == ["before the stop"]
        text = err.read_text()
        fallback = re.findall(r"after the stop n(\d+) \[logfunnel: collector unreachable\]", text)
        assert fallback == [str(n) for n in range(25)]
        assert re.search(
            r"logfunnel: pid \d+: 25 record\(s\) could not be sent to \S+ "
            r"and were written to stderr instead",
            text,
        )

    def test_stop_while_a_producer_keeps_logging(self, start_method: str, tmp_path: Path) -> None:
        """stop() ends although a producer never pauses; each record is in the sink or on stderr."""
        capture = Records()
        err = tmp_path / "child.err"
        funnel = logfunnel.Funnel(handlers=[capture]).start()
        ctx = funnel.context(start_method)
        started, enough, quit_event = ctx.Event(), ctx.Event(), ctx.Event()
        proc = ctx.Process(target=hw.log_through_stop, args=(str(err), started, enough, quit_event))
        proc.start()
        assert started.wait(JOIN_TIMEOUT)
        stopper = threading.Thread(target=funnel.stop)
        stopper.start()
        stopper.join(JOIN_TIMEOUT)
        stopped_in_time = not stopper.is_alive()
        quit_event.set()
        join_all([proc])
        assert stopped_in_time, "stop() did not return while a producer kept logging"
        total = int((tmp_path / "child.err.count").read_text())
        delivered = [int(m.split("n")[-1]) for m in capture.messages()]
        text = err.read_text()
        fallen = [int(n) for n in re.findall(r"through n(\d+) \[logfunnel", text)]
        assert sorted(delivered + fallen) == list(range(total))
        assert delivered == list(range(len(delivered)))
        assert fallen, "the producer never noticed the stop"
        assert f": {len(fallen)} record(s) could not be sent" in text

    def test_process_collector_killed_producers_fall_back(self, tmp_path: Path) -> None:
        """When a collector process is SIGKILLed, a producer's later records go to stderr."""
        err = tmp_path / "child.err"
        ctx = __import__("multiprocessing").get_context("spawn")
        attached, go = ctx.Event(), ctx.Event()
        with logfunnel.Funnel(tmp_path / "out.log", collector="process") as funnel:
            proc = ctx.Process(
                target=hw.attach_and_wait, args=(funnel.address, str(err), attached, go, 10)
            )
            proc.start()
            assert attached.wait(JOIN_TIMEOUT)
            collector = funnel._collector
            assert isinstance(collector, logfunnel._collector._process.ProcessCollector)
            os.kill(collector.pid, signal.SIGKILL)
            assert wait_for_exit(collector.pid, JOIN_TIMEOUT)
            go.set()
            join_all([proc])
        text = err.read_text()
        assert re.findall(r"p0 n(\d+) \[logfunnel: collector unreachable\]", text) == [
            str(n) for n in range(10)
        ]
        assert ": 10 record(s) could not be sent" in text

    def test_nothing_falls_between_the_last_read_and_the_close(
        self, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """A record sent after stop's last read, just before the close, is refused, not lost."""
        capture = Records()
        funnel = logfunnel.Funnel(handlers=[capture], attach_main=False).start()
        late = logfunnel.FunnelHandler(funnel.address)
        late.connect()
        close_all = logfunnel._collector._loop.Collector._close_all

        def send_then_close(collector: logfunnel._collector._loop.Collector) -> None:
            # The narrowest window there is: everything was read, nothing closed yet.
            late.handle(logging.LogRecord("worker", logging.INFO, "f", 1, "late", None, None))
            close_all(collector)

        monkeypatch.setattr(logfunnel._collector._loop.Collector, "_close_all", send_then_close)
        funnel.stop()
        late.close()
        assert capture.messages() == []
        assert late.fallbacks == 1
        err = capfd.readouterr().err
        assert "late [logfunnel: collector unreachable]" in err
        assert ": 1 record(s) could not be sent" in err

    @pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
    def test_a_dead_collector_thread_lets_producers_fall_back(
        self, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """If the collector thread dies, producers are not left blocked: they use stderr."""

        class Fatal(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if record.getMessage() == "die":
                    raise SystemExit("a sink that ends the thread it runs on")

        capture = Records()
        with logfunnel.Funnel(handlers=[Fatal(), capture]) as funnel:
            log = logging.getLogger("worker")
            log.warning("die")
            collector = funnel._collector
            assert collector is not None
            assert isinstance(collector, logfunnel._collector._loop.Collector)
            assert collector._thread is not None
            collector._thread.join(JOIN_TIMEOUT)
            for number in range(3):
                log.warning("after the death n%d", number)
        err = capfd.readouterr().err
        assert any("collector stopped by SystemExit" in m for m in capture.own(logging.CRITICAL))
        fallen = re.findall(r"after the death n(\d) \[logfunnel: collector unreachable\]", err)
        assert fallen == ["0", "1", "2"]


class TestParentCrash:
    def test_process_collector_writes_everything_after_parent_sigkill(
        self, start_method: str, tmp_path: Path
    ) -> None:
        """SIGKILL of the parent: the collector process serves on, writes every record, exits."""
        path = tmp_path / "app.log"
        ctx = __import__("multiprocessing").get_context(start_method)
        report, ready = ctx.Queue(), ctx.Event()
        producers, count = 4, 500
        parent = ctx.Process(
            target=hw.parent_with_process_collector,
            args=(str(path), start_method, producers, count, report, ready),
        )
        parent.start()
        pids = report.get(timeout=JOIN_TIMEOUT)
        parent.kill()
        join_all([parent])
        assert parent.exitcode == -signal.SIGKILL
        assert wait_for_exit(pids["collector"], JOIN_TIMEOUT), "the collector did not exit"
        for pid in pids["producers"]:
            assert wait_for_exit(pid, JOIN_TIMEOUT)
        lines = path.read_text().splitlines()
        messages = [line.split(": ", 1)[1] for line in lines if " worker: " in line]
        assert numbers_by_producer(messages) == {
            i: list(range(count + 100)) for i in range(producers)
        }
        assert "parent: every producer has logged" in messages
        assert any("the parent process is gone" in line for line in lines)
        if pids["address"].startswith("unix:"):
            assert not Path(pids["address"][len("unix:") :]).parent.exists()

    def test_process_collector_with_file_and_dictconfig_sinks(
        self, start_method: str, tmp_path: Path
    ) -> None:
        """collector="process" takes the file shortcut and a dictConfig dict as its sinks."""
        path, json_path = tmp_path / "app.log", tmp_path / "app.jsonl"
        config = {
            "version": 1,
            "formatters": {"bare": {"format": "%(levelname)s|%(message)s"}},
            "handlers": {
                "second": {
                    "class": "logging.FileHandler",
                    "filename": str(json_path),
                    "formatter": "bare",
                    "level": "WARNING",
                }
            },
            "root": {"handlers": ["second"], "level": "INFO"},
        }
        with logfunnel.Funnel(path, collector="process", config=config, level="INFO") as funnel:
            assert funnel.sinks == ()
            ctx = funnel.context(start_method)
            procs = [ctx.Process(target=hw.numbered, args=(i, 300)) for i in range(3)]
            for proc in procs:
                proc.start()
            join_all(procs)
            logging.getLogger("worker").warning("a warning from the parent")
        stats = funnel.stats
        messages = [line.split(": ", 1)[1] for line in path.read_text().splitlines()]
        assert numbers_by_producer(messages) == {i: list(range(300)) for i in range(3)}
        assert json_path.read_text().splitlines() == ["WARNING|a warning from the parent"]
        assert stats.records == 901
        assert not funnel.running

    def test_process_collector_refuses_handler_objects(self) -> None:
        """Handler objects cannot cross processes: collector="process" says what to give instead."""
        with pytest.raises(TypeError, match="cannot take handler objects"):
            logfunnel.Funnel(handlers=[Records()], collector="process")
        with pytest.raises(ValueError, match="needs its sinks as configuration"):
            logfunnel.Funnel(collector="process")
        bad = {"version": 1, "handlers": {"h": {"class": "no.such.Handler"}}}
        with pytest.raises(RuntimeError, match="did not start"):
            logfunnel.Funnel(collector="process", config=bad).start()


class Raising(logging.Handler):
    """A sink that fails on every record, as a full disk does."""

    def emit(self, record: logging.LogRecord) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


class FirstCallSlow(Records):
    """A sink whose first call takes longer than the slow-sink threshold, then blocks on a gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.first = True

    def emit(self, record: logging.LogRecord) -> None:
        if self.first:
            self.first = False
            threading.Event().wait(_guard.SLOW_SINK * 2)  # a slow disk, not test sync
        else:
            self.gate.wait(60)
        super().emit(record)


class TestSinks:
    def test_failing_sinks_cost_the_others_nothing(
        self, start_method: str, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """A raising sink and a full disk are counted and reported; the good sink gets all."""
        capture = Records()
        full_disk = logging.FileHandler("/dev/full")  # every flush fails with ENOSPC
        with logfunnel.Funnel(handlers=[Raising(), full_disk, capture]) as funnel:
            ctx = funnel.context(start_method)
            procs = [ctx.Process(target=hw.numbered, args=(i, 500)) for i in range(2)]
            for proc in procs:
                proc.start()
            join_all(procs)
            stats = funnel.stats
            running = funnel.running
        assert running
        assert numbers_by_producer(capture.messages()) == {i: list(range(500)) for i in range(2)}
        assert stats.sink_errors >= 2000
        reports = capture.own(logging.ERROR)
        assert any(re.match(r"logfunnel: sink <Raising .*failed \d+ time", r) for r in reports)
        assert any("ENOSPC" in r or "No space left" in r for r in reports)
        err = capfd.readouterr().err
        # One traceback per failing sink, not one per record (2,000 here). The full
        # disk's last flush and close at stop are reported by the stdlib as usual.
        assert err.count("--- logfunnel: sink") == 2
        assert err.count("--- Logging error ---") == 2
        assert err.count("Traceback") < 10

    def test_slow_sink_runs_apart_and_the_others_keep_pace(
        self, start_method: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """After one slow call a sink gets its own thread: the others get every record meanwhile."""
        capture, slow = Records(), FirstCallSlow()
        monkeypatch.setattr(_guard, "SLOW_SINK", 0.1)
        with logfunnel.Funnel(handlers=[slow, capture]) as funnel:
            ctx = funnel.context(start_method)
            proc = ctx.Process(target=hw.numbered, args=(0, 2000))
            proc.start()
            join_all([proc])
            # The producer is done although the slow sink is still held at its gate.
            logging.getLogger("worker").warning("last")
            assert capture.wait_for("last")
            stats = funnel.stats
            assert len(slow.records) <= 1
            slow.gate.set()
        assert stats.slow_sinks == 1
        assert numbers_by_producer(capture.messages()) == {0: list(range(2000))}
        got = slow.messages()
        assert got == [f"p0 n{n}" for n in range(2000)] + ["last"]
        assert any("now runs in its own thread" in m for m in capture.own(logging.WARNING))

    def test_stuck_sink_is_dropped_for_and_reported(
        self, start_method: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A sink that finishes nothing for the stall timeout loses its records, counted."""
        capture, stuck = Records(), FirstCallSlow()
        monkeypatch.setattr(_guard, "SLOW_SINK", 0.1)
        monkeypatch.setattr(_guard, "STALL_TIMEOUT", 0.3)
        monkeypatch.setattr(_guard, "QUEUE_RECORDS", 10)
        with logfunnel.Funnel(handlers=[stuck, capture]) as funnel:
            proc = funnel.context(start_method).Process(target=hw.numbered, args=(0, 300))
            proc.start()
            join_all([proc])
            logging.getLogger("worker").warning("last")
            # Every record reached the healthy sink while the stuck one held its gate.
            assert capture.wait_for("last")
            stats = funnel.stats
            stuck.gate.set()
        assert numbers_by_producer(capture.messages()) == {0: list(range(300))}
        assert stats.sink_dropped > 0
        # Each record exactly once: delivered to the stuck sink (in order, never twice)
        # or dropped for it and counted.
        sent = [f"p0 n{n}" for n in range(300)] + ["last"]
        got = stuck.messages()
        delivered = set(got)
        assert got == [m for m in sent if m in delivered]
        assert len(got) + funnel.stats.sink_dropped == len(sent)
        assert any("finished no record" in m for m in capture.own(logging.ERROR))
        assert any("is moving again" in m for m in capture.own(logging.WARNING))
