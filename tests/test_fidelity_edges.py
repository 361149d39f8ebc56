"""Workers log exactly as the parent would in one process, and nothing is lost at the edges.

Levels, ``propagate``, ``disabled``, ``logging.disable()`` and handlers on
non-root loggers; SIGTERM; a TCP collector that stops; process names and
the frames of crash tracebacks; secrets in what is printed.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import _edge_workers
import pytest
from _support import FORCED_TCP, JOIN_TIMEOUT, Records

import logfunnel

HERE = Path(__file__).parent

#: Start methods whose children write to this process's stderr, where capfd sees it:
#: a forkserver child writes to the stderr the server was started with (by whichever
#: test first used it).
own_stderr = pytest.mark.parametrize(
    "start_method", [m for m in ("fork", "spawn") if m in multiprocessing.get_all_start_methods()]
)


class PidFile(logging.FileHandler):
    """A file sink that writes the pid of the process that wrote each line."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{os.getpid()}|{record.name}|{record.getMessage()}"


def run_in_pool(funnel: logfunnel.Funnel, method: str, func: object, *args: object) -> object:
    with funnel.context(method).Pool(1) as pool:
        return pool.apply(func, args)  # type: ignore[arg-type]


class TestLevels:
    def test_the_funnel_leaves_the_root_level_alone(self, start_method: str) -> None:
        """With the root at INFO, no DEBUG record of any process is written, and the root
        level stays INFO while the funnel runs."""
        root = logging.getLogger()
        root.setLevel(logging.INFO)
        sink = Records()
        with logfunnel.Funnel(handlers=[sink]) as funnel:
            during = root.level
            logging.getLogger("parent").debug("parent debug")
            run_in_pool(funnel, start_method, _edge_workers.every_level, "child")
        assert during == logging.INFO
        assert sink.messages(None) == ["child info", "child warning", "child error"]

    def test_parent_logger_levels_and_flags_reach_workers(self, start_method: str) -> None:
        """A logger's level, propagate and disabled flags and logging.disable() set in the
        parent filter a worker's records as they would in the parent."""
        logging.getLogger("noisy").setLevel(logging.ERROR)
        logging.getLogger("muted").disabled = True
        logging.getLogger("private").propagate = False
        logging.getLogger("chatty").setLevel(logging.DEBUG)
        logging.getLogger().setLevel(logging.WARNING)
        sink = Records()
        names = ["noisy", "muted", "private", "chatty"]
        try:
            with (
                logfunnel.Funnel(handlers=[sink]) as funnel,
                funnel.context(start_method).Pool(1) as pool,
            ):
                state = pool.apply(_edge_workers.logger_state, (names,))
                for name in names:
                    pool.apply(_edge_workers.every_level, (name,))
        finally:
            for name in names:
                logger = logging.getLogger(name)
                logger.setLevel(logging.NOTSET)
                logger.disabled = False
                logger.propagate = True
        assert state["root"] == logging.WARNING
        assert state["noisy"][:3] == (logging.ERROR, True, False)
        assert state["muted"][:3] == (logging.NOTSET, True, True)
        assert state["private"][:3] == (logging.NOTSET, False, False)
        assert sink.messages(None) == [
            "noisy error",
            "chatty debug",
            "chatty info",
            "chatty warning",
            "chatty error",
        ]

    def test_logging_disable_reaches_workers(self, start_method: str) -> None:
        """logging.disable(INFO) in the parent silences INFO and below in workers too."""
        sink = Records()
        logging.disable(logging.INFO)
        try:
            with logfunnel.Funnel(handlers=[sink]) as funnel:
                run_in_pool(funnel, start_method, _edge_workers.every_level, "child")
        finally:
            logging.disable(logging.NOTSET)
        assert sink.messages(None) == ["child warning", "child error"]

    def test_level_argument_sets_the_root_level_while_running(self, start_method: str) -> None:
        """Funnel(level="INFO") sets the root level as basicConfig(level=...) does, in every
        process, and gives the old level back at stop."""
        root = logging.getLogger()
        root.setLevel(logging.ERROR)
        sink = Records()
        with logfunnel.Funnel(handlers=[sink], level="INFO") as funnel:
            during = root.level
            run_in_pool(funnel, start_method, _edge_workers.every_level, "child")
        assert (during, root.level) == (logging.INFO, logging.ERROR)
        assert sink.messages(None) == ["child info", "child warning", "child error"]

    def test_handler_level_is_the_lowest_sink_level(self, start_method: str) -> None:
        """A worker's funnel handler takes the lowest sink level, not its root logger."""
        logging.getLogger().setLevel(logging.INFO)
        with logfunnel.Funnel(handlers=[Records(logging.ERROR), Records(logging.WARNING)]) as f:
            state = run_in_pool(f, start_method, _edge_workers.logger_state, [])
        assert state == {"root": logging.INFO, "disable": 0, "handler_level": logging.WARNING}


class TestRotationSettings:
    @pytest.mark.parametrize("collector", ["thread", "process"])
    def test_max_bytes_with_backups_zero_is_refused(self, collector: str, tmp_path: Path) -> None:
        """Funnel(max_bytes=N, backups=0) is refused, as LockedFileHandler refuses it, instead
        of a file that silently never rotates."""
        with pytest.raises(ValueError, match="backups=0 would never rotate"):
            logfunnel.Funnel(tmp_path / "app.log", max_bytes=1000, backups=0, collector=collector)
        assert not (tmp_path / "app.log").exists()

    @pytest.mark.parametrize(
        ("setting", "message"),
        [
            ({"when": "fortnight"}, "when must be one of"),
            ({"when": "H", "interval": 0}, "interval must be 1 or more"),
            ({"encoding": "no-such-codec"}, "unknown encoding"),
            ({"fmt": "no fields"}, "Invalid format"),
        ],
    )
    def test_bad_sink_settings_are_refused_when_the_funnel_is_made(
        self, setting: dict[str, object], message: str, tmp_path: Path
    ) -> None:
        """A bad rotation time, interval, encoding or format is a ValueError from Funnel(...)
        itself, also for collector="process", whose sinks are made only in the collector
        process; no file is made."""
        with pytest.raises(ValueError, match=message):
            logfunnel.Funnel(tmp_path / "app.log", collector="process", **setting)  # type: ignore[arg-type]
        assert not (tmp_path / "app.log").exists()


class TestNonRootHandlers:
    def test_records_reach_a_non_root_handler_through_the_collector(
        self, start_method: str, tmp_path: Path
    ) -> None:
        """A handler on a non-root logger of the parent gets a worker's records for that
        logger, written by the parent only (fork children drop their inherited copy), and
        the root sinks get them too as the logger propagates."""
        audit_path = tmp_path / "audit.log"
        audit = PidFile(audit_path)
        logging.getLogger("audit").addHandler(audit)
        sink = Records()
        try:
            with logfunnel.Funnel(handlers=[sink]) as funnel:
                run_in_pool(funnel, start_method, _edge_workers.every_level, "audit.trail")
                logging.getLogger("audit").warning("from the parent")
                run_in_pool(funnel, start_method, _edge_workers.every_level, "other")
                handlers_during = logging.getLogger("audit").handlers[:]
        finally:
            logging.getLogger("audit").removeHandler(audit)
            audit.close()
        assert logging.getLogger("audit").handlers == []
        lines = audit_path.read_text().splitlines()
        assert lines == [
            f"{os.getpid()}|audit.trail|audit.trail {level}"
            for level in ("debug", "info", "warning", "error")
        ] + [f"{os.getpid()}|audit|from the parent"]
        assert sink.messages("audit.trail") == [
            f"audit.trail {level}" for level in ("debug", "info", "warning", "error")
        ]
        assert sink.messages("audit") == ["from the parent"]
        assert sink.messages("other") == [
            f"other {level}" for level in ("debug", "info", "warning", "error")
        ]
        assert audit not in handlers_during

    @pytest.mark.parametrize("collector", ["process", "thread"])
    def test_a_dictconfig_gives_levels_and_handlers_beside_the_parents(
        self, collector: str, start_method: str, tmp_path: Path
    ) -> None:
        """With either collector, workers follow the parent's logger levels and the
        dictConfig's levels, and a dictConfig handler on a non-root logger gets its records."""
        main, audit = tmp_path / "main.log", tmp_path / "audit.log"
        config = {
            "version": 1,
            # Applied in this process by the thread collector: keep "noisy" as it is.
            "disable_existing_loggers": False,
            "formatters": {"bare": {"format": "%(name)s %(message)s"}},
            "handlers": {
                "main": {
                    "class": "logging.FileHandler",
                    "filename": str(main),
                    "formatter": "bare",
                },
                "audit": {
                    "class": "logging.FileHandler",
                    "filename": str(audit),
                    "formatter": "bare",
                },
            },
            "loggers": {
                "quiet": {"level": "WARNING"},
                "audit": {"handlers": ["audit"], "propagate": False},
            },
            "root": {"handlers": ["main"], "level": "INFO"},
        }
        logging.getLogger("noisy").setLevel(logging.ERROR)
        try:
            with logfunnel.Funnel(collector=collector, config=config) as funnel:
                for name in ("noisy", "quiet", "plain", "audit.trail"):
                    run_in_pool(funnel, start_method, _edge_workers.every_level, name)
        finally:
            logging.getLogger("noisy").setLevel(logging.NOTSET)
        assert main.read_text().splitlines() == [
            "noisy noisy error",
            "quiet quiet warning",
            "quiet quiet error",
            "plain plain info",
            "plain plain warning",
            "plain plain error",
        ]
        assert audit.read_text().splitlines() == [
            f"audit.trail audit.trail {level}" for level in ("info", "warning", "error")
        ]

    def test_a_logger_that_does_not_propagate_keeps_its_records_from_the_root(
        self, start_method: str
    ) -> None:
        """Records of a logger with its own handler and propagate=False reach that handler
        only, as in one process; its level filters them in the worker."""
        own = Records()
        logger = logging.getLogger("secluded")
        logger.addHandler(own)
        logger.propagate = False
        logger.setLevel(logging.WARNING)
        sink = Records()
        try:
            with logfunnel.Funnel(handlers=[sink]) as funnel:
                run_in_pool(funnel, start_method, _edge_workers.every_level, "secluded.part")
        finally:
            logger.removeHandler(own)
            logger.propagate = True
            logger.setLevel(logging.NOTSET)
        assert own.messages(None) == ["secluded.part warning", "secluded.part error"]
        assert sink.messages(None) == []

    def test_a_record_meeting_the_handler_twice_is_sent_once(self) -> None:
        """A record that passes two loggers carrying the funnel's handler is sent once."""
        logging.getLogger().setLevel(logging.INFO)
        branch = Records()
        logging.getLogger("branch").addHandler(branch)
        sink = Records()
        try:
            with logfunnel.Funnel(handlers=[sink]) as funnel:
                logging.getLogger("branch.leaf").info("once")
            stats_records = funnel.stats.records
        finally:
            logging.getLogger("branch").removeHandler(branch)
        got = (branch.messages(None), sink.messages(None), stats_records)
        assert got == (["once"], ["once"], 1)


class TestSigterm:
    @pytest.mark.skipif(
        FORCED_TCP,
        reason="its sink holds the collector until the worker ended, and over TCP a worker's "
        "end waits for acknowledgements",
    )
    def test_sigterm_drains_before_the_process_ends(
        self, start_method: str, tmp_path: Path
    ) -> None:
        """SIGTERM to the funnel's process writes every record already sent, removes the
        private directory, then ends the process as SIGTERM does."""
        path = tmp_path / "app.log"
        gate_r, gate_w = os.pipe()
        count = 100
        proc = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "_sigterm_script.py"),
                str(path),
                start_method,
                str(gate_r),
                str(count),
            ],
            pass_fds=(gate_r,),
            stdout=subprocess.PIPE,
            text=True,
        )
        os.close(gate_r)
        try:
            assert proc.stdout is not None
            ready = proc.stdout.readline().split()
            assert ready[:1] == ["logged"]
            proc.send_signal(signal.SIGTERM)
            os.write(gate_w, b"go")
            assert proc.wait(JOIN_TIMEOUT) == -signal.SIGTERM
        finally:
            os.close(gate_w)
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        written = path.read_text().splitlines()
        assert written == [f"w0 n{number}" for number in range(count)]
        socket_path = ready[1][len("unix:") :]
        assert not os.path.exists(os.path.dirname(socket_path))

    def test_a_handler_the_program_installed_is_left_alone(self) -> None:
        """A program's own SIGTERM handler is neither replaced nor removed by a funnel."""

        def mine(signum: int, frame: object) -> None:
            pass

        previous = signal.signal(signal.SIGTERM, mine)
        try:
            with logfunnel.Funnel(handlers=[Records()]):
                during = signal.getsignal(signal.SIGTERM)
            after = signal.getsignal(signal.SIGTERM)
        finally:
            signal.signal(signal.SIGTERM, previous)
        assert during is mine
        assert after is mine

    def test_workers_keep_the_default_sigterm(self, start_method: str) -> None:
        """Worker processes keep SIGTERM's default action, so Pool.terminate() ends them."""
        with logfunnel.Funnel(handlers=[Records()]) as funnel:
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
            with funnel.context(start_method).Pool(1) as pool:
                handler = pool.apply(signal.getsignal, (signal.SIGTERM,))
        assert handler == signal.SIG_DFL
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    @pytest.mark.skipif(
        "fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork method"
    )
    def test_sigterm_at_once_after_fork_ends_the_child(self) -> None:
        """A fork child sent SIGTERM right after it started, before its fork handlers ran,
        is ended by it as without a funnel (``with Pool()`` ending at once would otherwise
        wait for it forever)."""
        ctx = multiprocessing.get_context("fork")
        reader, writer = ctx.Pipe(duplex=False)
        with logfunnel.Funnel(handlers=[Records()]):
            procs = []
            for _ in range(20):
                proc = ctx.Process(
                    target=_edge_workers.wait_for_eof, args=(reader, writer, JOIN_TIMEOUT)
                )
                proc.start()
                proc.terminate()
                procs.append(proc)
            writer.close()  # a child that outlived its SIGTERM now ends on its own, with 0
            for proc in procs:
                proc.join(JOIN_TIMEOUT)
            reader.close()
        assert [proc.exitcode for proc in procs] == [-signal.SIGTERM] * len(procs)

    def test_a_funnel_stopped_from_another_thread_leaves_workers_the_default(
        self, start_method: str
    ) -> None:
        """A funnel stopped from a thread other than the main one (which cannot give SIGTERM
        back) neither leaves its handler to workers nor keeps the next funnel from taking it
        over and giving SIGTERM's default back at its stop."""
        first = logfunnel.Funnel(handlers=[Records()]).start()
        stopper = threading.Thread(target=first.stop)
        stopper.start()
        stopper.join(JOIN_TIMEOUT)
        with logfunnel.Funnel(handlers=[Records()]) as second:
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
            with second.context(start_method).Pool(1) as pool:
                handler = pool.apply(signal.getsignal, (signal.SIGTERM,))
        assert handler == signal.SIG_DFL
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


class TestAfterStop:
    @pytest.mark.parametrize("mode", ["frames", "lines"])
    def test_tcp_records_after_stop_all_reach_stderr(
        self, mode: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """Over TCP, every record sent after the collector stopped goes to stderr, the
        first one too (with a record sink, frames; with a plain file sink, line mode)."""
        path = tmp_path / "app.log"
        sink = Records() if mode == "frames" else logging.FileHandler(path)
        funnel = logfunnel.Funnel(handlers=[sink], listen="tcp://127.0.0.1:0", attach_main=False)
        funnel.start()
        handler = logfunnel.FunnelHandler(funnel.address)
        logger = logging.getLogger("tcp.after")
        logger.addHandler(handler)
        logger.propagate = False
        try:
            logger.warning("before stop")
            assert (handler.config["lines"] is not None) == (mode == "lines")
            funnel.stop()
            for number in range(3):
                logger.warning("after stop %d", number)
            fallbacks = handler.fallbacks
        finally:
            logger.removeHandler(handler)
            logger.propagate = True
            handler.close()
        err = capfd.readouterr().err
        if isinstance(sink, Records):
            written = sink.messages(None)
        else:
            written = path.read_text().splitlines()
        assert written == ["before stop"]
        assert fallbacks == 3
        for number in range(3):
            assert f"after stop {number} [logfunnel: collector unreachable]" in err

    def test_the_loss_count_is_said_once(self) -> None:
        """A process whose records went to stderr says how many once, though its handler is
        closed twice (by detach() and again by logging's own shutdown at exit)."""
        funnel = logfunnel.Funnel(handlers=[Records()], attach_main=False).start()
        script = (
            "import logging, sys, logfunnel\n"
            "handler = logfunnel.attach(sys.argv[1])  # kept, so shutdown closes it too\n"
            "print('attached', flush=True)\n"
            "sys.stdin.readline()\n"
            "logging.getLogger('late').warning('one')\n"
            "logging.getLogger('late').warning('two')\n"
            "logfunnel.detach()\n"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", script, funnel.address],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdin is not None
            assert proc.stdout.readline() == "attached\n"
            funnel.stop()
            _, err = proc.communicate("go\n", timeout=JOIN_TIMEOUT)
        finally:
            funnel.stop()
            proc.kill()
            proc.wait()
        assert proc.returncode == 0
        assert err.count("2 record(s) could not be sent") == 1, err

    @own_stderr
    def test_children_say_what_could_not_be_sent(
        self, start_method: str, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """A child started through the funnel that logs after the funnel stopped says on
        stderr, once, how many records went there instead."""
        ctx = multiprocessing.get_context(start_method)
        logged, stopped = ctx.Event(), ctx.Event()
        sink = Records()
        with logfunnel.Funnel(handlers=[sink]) as funnel:
            proc = funnel.context(start_method).Process(
                target=_edge_workers.log_after_stop, args=(logged, stopped, 4)
            )
            proc.start()
            assert logged.wait(JOIN_TIMEOUT)
        stopped.set()
        proc.join(JOIN_TIMEOUT)
        assert proc.exitcode == 0
        err = capfd.readouterr().err
        assert sink.messages(None) == ["before the stop"]
        assert err.count("4 record(s) could not be sent") == 1


class TestWhatUsersSee:
    def test_process_names_are_the_stdlib_names(self, start_method: str) -> None:
        """Processes and pool workers of a funnel context have the stdlib's names."""
        plain = multiprocessing.get_context(start_method)
        expected_process = re.sub(r"-\d+$", "", plain.Process().name)
        with logfunnel.Funnel(handlers=[Records()]) as funnel:
            ctx = funnel.context(start_method)
            process_name = ctx.Process().name
            with ctx.Pool(1) as pool:
                worker_name = pool.apply(_edge_workers.name_of_process)
        assert re.fullmatch(rf"{expected_process}-\d+", process_name)
        assert re.fullmatch(
            rf"{expected_process.replace('Process', 'PoolWorker')}-\d+", worker_name
        )

    @own_stderr
    def test_crash_tracebacks_and_stacks_show_no_logfunnel_frame(
        self, start_method: str, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """The crash record's traceback, the child's stderr traceback and stack_info show
        the stdlib's frames only, as without logfunnel."""
        sink = Records()
        with logfunnel.Funnel(handlers=[sink]) as funnel:
            proc = funnel.context(start_method).Process(target=_edge_workers.crash_with_stack)
            proc.start()
            proc.join(JOIN_TIMEOUT)
        assert proc.exitcode == 1
        err = capfd.readouterr().err
        formatter = logging.Formatter()
        texts = [formatter.format(record) for record in sink.records]
        assert any("Traceback (most recent call last)" in text for text in texts)
        assert any("Stack (most recent call last)" in text for text in texts)
        package = os.path.dirname(logfunnel.__file__)
        for text in [*texts, err]:
            assert package not in text
            assert "in run\n    self._target(*self._args, **self._kwargs)" in text
        assert f"Process {proc.name}:\nTraceback (most recent call last)" in err
        assert "ValueError: crashed on purpose" in err

    def test_the_tcp_key_is_never_printed(self) -> None:
        """The TCP key is in the address producers take, but not in any repr or message."""
        with logfunnel.Funnel(handlers=[Records()], listen="tcp://127.0.0.1:0") as funnel:
            key = re.search(r"key=([0-9a-f]+)", funnel.address)
            assert key is not None
            handler = logfunnel.attached()
            shown = [repr(funnel), repr(handler), str(handler), repr(funnel.context("spawn"))]
            port = funnel.address.split(":")[2].split("?")[0]
        with pytest.raises(logfunnel.AttachError) as refused:
            logfunnel.attach(f"tcp://127.0.0.1:{port}?key={key.group(1)}", timeout=2)
        for text in [*shown, str(refused.value)]:
            assert key.group(1) not in text
