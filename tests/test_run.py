"""`logfunnel run`: a command's whole process tree in one log, its signals, output and exit.

Commands are real processes, and signals real signals. A test waits for a
command to say it is ready on its stdout before it signals anything.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import IO

import pytest
from _support import JOIN_TIMEOUT, Records

import logfunnel
from logfunnel._cli import build_parser, main
from logfunnel._cli._run import MAX_LINE, Lines, _Capture
from logfunnel._cli._sinks import FLAGS, sink_kwargs
from logfunnel._sinks._config import SinkConfig

#: ``logfunnel run`` by ``python -m``.
RUN = [sys.executable, "-m", "logfunnel", "run"]
PYTHON = os.path.basename(sys.executable)
#: A format that shows which process and logger wrote each line.
FORMAT = "%(process)d|%(processName)s|%(name)s|%(levelname)s|%(message)s"


def console_script() -> list[str]:
    """The ``logfunnel`` console script of this environment."""
    found = shutil.which("logfunnel")
    script = found or str(Path(sys.executable).parent / "logfunnel")
    if not os.path.exists(script):
        pytest.skip("no logfunnel console script in this environment")
    return [script, "run"]


def read_line(stream: IO[str], timeout: float = JOIN_TIMEOUT) -> str:
    """The next line of a child's output, or a failure if none comes within ``timeout``."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        assert selector.select(timeout), "the command did not say it was ready"
    return stream.readline().strip()


def log_lines(path: Path) -> list[list[str]]:
    """``FORMAT`` lines of ``path``, split into their fields."""
    return [line.split("|", 4) for line in path.read_text().splitlines()]


def summary(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("logfunnel run: ")]
    assert len(lines) == 1, stderr
    return lines[0]


# Python commands, written to files by the tests that run them.

TREE_TOP = """
import logging, os, shlex, subprocess, sys
logging.getLogger("tree").info("top")
subprocess.run(["sh", "-c", shlex.join([sys.executable, sys.argv[1], sys.argv[2]])], check=True)
"""
TREE_CHILD = """
import logging, subprocess, sys
logging.getLogger("tree").info("child")
subprocess.run([sys.executable, sys.argv[1]], check=True)
"""
TREE_GRANDCHILD = """
import logging
logging.getLogger("tree").warning("grandchild")
"""

#: Counts the SIGINTs and SIGHUPs it gets; SIGTERM prints the counts and ends it.
COUNTER = """
import os, signal, sys
counts = {"SIGINT": 0, "SIGHUP": 0}
def count(signum, frame):
    counts[signal.Signals(signum).name] += 1
def done(signum, frame):
    print(counts["SIGINT"], counts["SIGHUP"], flush=True)
    sys.exit(0)
signal.signal(signal.SIGINT, count)
signal.signal(signal.SIGHUP, count)
signal.signal(signal.SIGTERM, done)
if sys.argv[1:] == ["own-group"]:
    os.setpgid(0, 0)
print("ready", os.getpid(), flush=True)
while True:
    signal.pause()
"""

#: Logs, says it is ready, and waits to be signalled; with "handle", handles SIGTERM.
WAITER = """
import logging, os, signal, sys
log = logging.getLogger("waiter")
if sys.argv[1:] == ["handle"]:
    def on_term(signum, frame):
        log.warning("SIGTERM, leaving with 7")
        sys.exit(7)
    signal.signal(signal.SIGTERM, on_term)
log.warning("waiting")
print("ready", os.getpid(), flush=True)
while True:
    signal.pause()
"""


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.fixture
def leftovers() -> Iterator[list[int]]:
    """Pids (and, negative, process groups) a test started: whatever is left of them when
    it ends (a failed test) is killed, so no command outlives it."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


class TestProcessTree:
    def test_every_python_process_of_the_tree_lands_in_the_file_once(self, tmp_path: Path) -> None:
        """A Python command, its subprocess started through sh and that one's own child all
        write into the -o file, each record once, from three processes (the console script)."""
        top = write(tmp_path / "top.py", TREE_TOP)
        child = write(tmp_path / "child.py", TREE_CHILD)
        grandchild = write(tmp_path / "grandchild.py", TREE_GRANDCHILD)
        log = tmp_path / "tree.log"
        result = subprocess.run(
            [
                *console_script(),
                *("-o", str(log), "--level", "INFO", "--format", FORMAT),
                *("--", sys.executable, top, child, grandchild),
            ],
            capture_output=True,
            text=True,
            timeout=JOIN_TIMEOUT * 2,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        records = [fields for fields in log_lines(tmp_path / "tree.log") if fields[2] == "tree"]
        assert sorted(fields[4] for fields in records) == ["child", "grandchild", "top"]
        assert len({fields[0] for fields in records}) == 3
        assert summary(result.stderr) == (
            f"logfunnel run: {PYTHON} exited with 0; 3 processes attached, 3 records, "
            "0 lost, 0 dropped, 0 gaps"
        )


class TestExitStatus:
    @pytest.mark.parametrize("code", [0, 3])
    def test_the_commands_exit_code_is_runs(self, code: int) -> None:
        """run returns its command's exit code (in-process main())."""
        assert main(["run", "-q", "--", sys.executable, "-c", f"raise SystemExit({code})"]) == code

    def test_in_process_a_command_killed_by_a_signal_gives_128_plus_n(self) -> None:
        """Called as main([...]), run returns 128+N for a command killed by signal N."""
        kill = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
        assert main(["run", "-q", "--", sys.executable, "-c", kill]) == 128 + signal.SIGTERM

    @pytest.mark.parametrize(
        ("code", "status"),
        [
            ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", -signal.SIGTERM),
            ("import os, signal; os.kill(os.getpid(), signal.SIGINT)", -signal.SIGINT),
            ("import os; os.abort()", 128 + signal.SIGABRT),
        ],
        ids=["SIGTERM", "SIGINT", "SIGABRT"],
    )
    def test_run_ends_as_its_command_was_killed(
        self, code: str, status: int, tmp_path: Path
    ) -> None:
        """A command killed by a signal ends run by the same signal, once the log is drained;
        one that dumped core (SIGABRT) makes run exit with 128+N instead of dumping its own."""
        log = tmp_path / "run.log"
        before = "import logging; logging.getLogger('x').warning('before the end'); "
        line = shlex.join([*RUN, "-o", str(log), "--", sys.executable, "-c", before + code])
        result = subprocess.run(
            ["sh", "-c", f"ulimit -c 0; exec {line}"],  # no core file, wherever it would go
            capture_output=True,
            text=True,
            timeout=JOIN_TIMEOUT,
            check=False,
        )
        assert result.returncode == status, result.stderr
        assert "before the end" in log.read_text()
        assert " was killed by SIG" in summary(result.stderr)

    def test_a_shell_sees_128_plus_n(self) -> None:
        """A shell running run shows 128+N in $? for a command killed by signal N."""
        kill = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
        line = shlex.join([*RUN, "-q", "--", sys.executable, "-c", kill])
        result = subprocess.run(
            ["sh", "-c", f'{line}; echo "status $?"'],
            capture_output=True,
            text=True,
            timeout=JOIN_TIMEOUT,
            check=False,
        )
        assert result.stdout.strip() == f"status {128 + signal.SIGTERM}"


class TestSignals:
    @pytest.fixture(autouse=True)
    def _leftovers(self, leftovers: list[int]) -> None:
        self.leftovers = leftovers

    def start(self, tmp_path: Path, script: str, *args: str) -> subprocess.Popen[str]:
        """run (python -m) with ``script`` as its command, in a session of its own; the
        command has said "ready" when this returns."""
        path = write(tmp_path / "command.py", script)
        proc = subprocess.Popen(
            [*RUN, "-o", str(tmp_path / "run.log"), "--", sys.executable, path, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.leftovers.append(-proc.pid)
        assert proc.stdout is not None
        ready, pid = read_line(proc.stdout).split()
        self.leftovers.append(int(pid))  # it may leave the group
        assert ready == "ready"
        return proc

    def finish(self, proc: subprocess.Popen[str]) -> tuple[str, str]:
        try:
            return proc.communicate(timeout=JOIN_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def test_sigterm_to_run_reaches_the_command(self, tmp_path: Path) -> None:
        """SIGTERM to run's pid ends the command; run drains the log and ends by SIGTERM."""
        proc = self.start(tmp_path, WAITER)
        proc.send_signal(signal.SIGTERM)
        _, stderr = self.finish(proc)
        assert proc.returncode == -signal.SIGTERM, stderr
        assert "waiting" in (tmp_path / "run.log").read_text()
        assert f"{PYTHON} was killed by SIGTERM" in summary(stderr)

    def test_a_signal_another_thread_takes_still_reaches_the_command(self, tmp_path: Path) -> None:
        """A SIGTERM the kernel gives to a thread other than the main one (here: sent to one)
        is passed on all the same: the main thread is not left blocked waiting for the
        command (in-process main(); the command says it is ready through a FIFO)."""
        fifo = tmp_path / "ready"
        os.mkfifo(fifo)
        command = (
            "import signal, sys; signal.alarm(300); "  # never outlives a failed test for long
            "open(sys.argv[1], 'w').close(); signal.pause()"
        )

        def signal_this_thread_once_ready() -> None:
            with open(fifo) as ready:
                ready.read()
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

        thread = threading.Thread(target=signal_this_thread_once_ready, daemon=True)
        thread.start()
        log = str(tmp_path / "run.log")
        code = main(["run", "-q", "-o", log, "--", sys.executable, "-c", command, str(fifo)])
        thread.join(JOIN_TIMEOUT)
        assert code == 128 + signal.SIGTERM

    def test_a_command_that_handles_sigterm_gives_its_own_exit_code(self, tmp_path: Path) -> None:
        """SIGTERM passed on to a command that handles it: run exits with the command's code,
        and the record its handler logged is in the log."""
        proc = self.start(tmp_path, WAITER, "handle")
        proc.send_signal(signal.SIGTERM)
        _, stderr = self.finish(proc)
        assert proc.returncode == 7, stderr
        assert "SIGTERM, leaving with 7" in (tmp_path / "run.log").read_text()

    @pytest.mark.parametrize(
        ("to", "command_args", "sigints"),
        [("group", (), 1), ("run", (), 0), ("run", ("own-group",), 1)],
        ids=["to-the-group", "to-run-alone", "to-run-command-in-own-group"],
    )
    def test_sigint_reaches_the_command_once(
        self, to: str, command_args: tuple[str, ...], sigints: int, tmp_path: Path
    ) -> None:
        """SIGINT to the process group (as Ctrl-C sends it) is seen once by the command, not
        passed on again; to run alone it is passed on only to a command that left run's group.

        The SIGTERM that ends the command is passed on after any SIGINT run passes on, and
        the command handles a pending SIGINT before a pending SIGTERM (Python runs handlers
        by signal number), so a second SIGINT would be counted.
        """
        proc = self.start(tmp_path, COUNTER, *command_args)
        if to == "group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = self.finish(proc)
        assert proc.returncode == 0, stderr
        assert stdout.split() == [str(sigints), "0"]

    def test_sighup_to_run_is_passed_on_once(self, tmp_path: Path) -> None:
        """SIGHUP to run's pid reaches the command once."""
        proc = self.start(tmp_path, COUNTER)
        proc.send_signal(signal.SIGHUP)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = self.finish(proc)
        assert proc.returncode == 0, stderr
        assert stdout.split() == ["0", "1"]

    @pytest.mark.parametrize(("trap", "seen"), [('trap "" HUP; ', "SIG_IGN"), ("", "SIG_DFL")])
    def test_a_signal_ignored_by_runs_caller_stays_ignored_for_the_command(
        self, trap: str, seen: str
    ) -> None:
        """Under nohup (SIGHUP ignored) the command ignores SIGHUP too; otherwise it has the
        default action, not run's handler."""
        show = "import signal; print(signal.getsignal(signal.SIGHUP).name)"
        line = shlex.join([*RUN, "-q", "--", sys.executable, "-c", show])
        result = subprocess.run(
            ["sh", "-c", f"{trap}exec {line}"],
            capture_output=True,
            text=True,
            timeout=JOIN_TIMEOUT,
            check=False,
        )
        assert (result.returncode, result.stdout.strip()) == (0, seen), result.stderr


class TestCaptureOutput:
    SHELL = "echo out; echo err >&2; printf '\\377bad\\n'; printf partial"

    def test_lines_are_recorded_and_passed_through_unchanged(self, tmp_path: Path) -> None:
        """With --capture-output, a non-Python command's stdout and stderr lines are records
        (stdout INFO, stderr WARNING, the command's pid and name), the last line without a
        newline and bytes that are not UTF-8 too; the output still passes through as bytes."""
        log = tmp_path / "run.log"
        argv = [*RUN, "--capture-output", "-o", str(log), "--format", FORMAT]
        result = subprocess.run(
            [*argv, "--", "sh", "-c", self.SHELL],
            capture_output=True,
            timeout=JOIN_TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"out\n\xffbad\npartial"
        assert result.stderr.startswith(b"err\n")
        records = log_lines(log)
        pids = {fields[0] for fields in records}
        assert len(pids) == 1
        assert pids != {str(os.getpid())}
        by_stream = {
            name: [(f[1], f[3], f[4]) for f in records if f[2] == name]
            for name in ("stdout", "stderr")
        }
        assert by_stream == {
            "stdout": [
                ("sh", "INFO", "out"),
                ("sh", "INFO", "\\xffbad"),
                ("sh", "INFO", "partial"),
            ],
            "stderr": [("sh", "WARNING", "err")],
        }
        assert "0 processes attached, 4 records (4 captured lines)," in summary(
            result.stderr.decode()
        )

    def test_without_the_option_output_is_not_recorded(
        self, tmp_path: Path, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """By default the command's output goes straight to run's stdout and stderr, and the
        log holds no record of it."""
        log = tmp_path / "run.log"
        assert main(["run", "-q", "-o", str(log), "--", "sh", "-c", self.SHELL]) == 0
        assert capfd.readouterr().err == "err\n"
        assert log.read_text() == ""

    def test_level_filters_captured_lines(
        self, tmp_path: Path, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """--level WARNING keeps the stderr lines (WARNING) and leaves out the stdout ones
        (INFO), which still pass through."""
        log = tmp_path / "run.log"
        argv = ["run", "-q", "--capture-output", "--level", "WARNING", "-o", str(log)]
        argv += ["--format", FORMAT, "--", "sh", "-c", "echo out; echo err >&2"]
        assert main(argv) == 0
        assert [(f[2], f[4]) for f in log_lines(log)] == [("stderr", "err")]
        assert capfd.readouterr().out == "out\n"

    def test_a_closed_stdout_gives_the_command_sigpipe(self, leftovers: list[int]) -> None:
        """When run's stdout reader goes away (| head), the command's writes fail as they would
        without run: `yes` ends by SIGPIPE, and so does run."""
        proc = subprocess.Popen(
            [*RUN, "-q", "--capture-output", "--", "yes"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        leftovers.append(-proc.pid)
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"y\n"
        proc.stdout.close()
        try:
            assert proc.wait(JOIN_TIMEOUT) == -signal.SIGPIPE
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


class TestCaptureReader:
    """The reader itself, over pipes this test writes: which end of a stream comes first is
    up to the test, not to a race with a command's exit."""

    def reader(self) -> tuple[_Capture, int, int, Records]:
        """A reader of two fresh pipes, their write ends, and a sink of its records."""
        (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe()
        sink = Records()
        for name in ("stdout", "stderr"):
            logging.getLogger(name).addHandler(sink)
        reader = _Capture(4242, "/bin/cmd", os.fdopen(out_r, "rb"), os.fdopen(err_r, "rb"), None)
        reader.start()
        return reader, out_w, err_w, sink

    def test_a_last_line_is_recorded_when_its_pipe_ends(
        self, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """A stream's last line without a newline is a record as soon as the stream ends, with
        the command's pid and name."""
        reader, out_w, err_w, sink = self.reader()
        os.write(out_w, b"line\npartial")
        os.close(out_w)
        os.close(err_w)
        assert sink.wait_for("partial")
        reader.finish()
        assert sink.messages("stdout") == ["line", "partial"]
        assert {(r.process, r.processName) for r in sink.records} == {(4242, "cmd")}
        assert capfd.readouterr().out == "line\npartial"

    def test_at_the_commands_end_what_the_pipes_hold_is_read_and_no_more_waited_for(
        self, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """When the command has ended while another process still holds its pipes open,
        finish() reads what they hold, records the last line without a newline, and returns."""
        reader, out_w, err_w, sink = self.reader()
        os.write(out_w, b"partial")
        os.write(err_w, b"err\n")
        try:
            reader.finish()
        finally:
            os.close(out_w)
            os.close(err_w)
        assert (sink.messages("stdout"), sink.messages("stderr")) == (["partial"], ["err"])
        assert capfd.readouterr() == ("partial", "err\n")


class TestLines:
    def test_a_character_cut_between_reads_stays_whole(self) -> None:
        """A UTF-8 character split over two reads decodes as one character."""
        lines = Lines()
        encoded = "café\n".encode()
        assert lines.feed(encoded[:4]) == []
        assert lines.feed(encoded[4:]) == ["café"]

    def test_line_ends_and_the_last_line(self) -> None:
        """\\n ends a line, a \\r before it is dropped, a \\r inside stays, and end() gives
        the last line without a newline; nothing more after it."""
        lines = Lines()
        assert lines.feed(b"a\r\nb\rc\nla") == ["a", "b\rc"]
        assert lines.feed(b"st") == []
        assert lines.end() == ["last"]
        assert lines.end() == []

    def test_bytes_that_are_not_utf8_are_kept_escaped(self) -> None:
        """Undecodable bytes, also one cut off at the end, come out as \\xNN."""
        lines = Lines()
        assert lines.feed(b"\xff\xfe ok\n\xc3") == ["\\xff\\xfe ok"]
        assert lines.end() == ["\\xc3"]

    def test_an_endless_line_is_cut(self) -> None:
        """A line longer than the limit becomes several records of at most the limit."""
        lines = Lines(limit=4)
        assert lines.feed(b"abcdefghij") == ["abcd", "efgh"]
        assert lines.feed(b"\n") == ["ij"]
        assert MAX_LINE >= 1 << 16


class TestConfig:
    @pytest.mark.parametrize("collector", ["thread", "process"])
    def test_a_dictconfig_file_gives_sinks_and_routes(self, collector: str, tmp_path: Path) -> None:
        """--config FILE with either collector: the config's root handler and the -o file both
        get every record, and its handler on logger app.db gets that logger's records."""
        main_log, db_log, shortcut = tmp_path / "main.log", tmp_path / "db.log", tmp_path / "o.log"
        config = {
            "version": 1,
            "formatters": {"bare": {"format": "%(name)s %(message)s"}},
            "handlers": {
                "main": {"class": "logging.FileHandler", "filename": str(main_log)},
                "db": {"class": "logging.FileHandler", "filename": str(db_log)},
            },
            "loggers": {"app.db": {"handlers": ["db"]}},
            "root": {"handlers": ["main"], "level": "INFO"},
        }
        for handler in config["handlers"].values():  # type: ignore[attr-defined]
            handler["formatter"] = "bare"
        config_file = tmp_path / "logging.json"
        config_file.write_text(json.dumps(config))
        code = "import logging; logging.getLogger('app').info('one'); "
        code += "logging.getLogger('app.db').info('two')"
        result = subprocess.run(
            [
                *(*RUN, "--collector", collector, "--config", str(config_file)),
                *("-o", str(shortcut), "--format", "%(name)s %(message)s"),
                *("--", sys.executable, "-c", code),
            ],
            capture_output=True,
            text=True,
            timeout=JOIN_TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert main_log.read_text().splitlines() == ["app one", "app.db two"]
        assert shortcut.read_text().splitlines() == ["app one", "app.db two"]
        assert db_log.read_text().splitlines() == ["app.db two"]


class TestSummary:
    WARN = "import logging; [logging.getLogger('s').warning('w %d', i) for i in range(3)]"

    def test_one_summary_line_on_stderr(
        self, tmp_path: Path, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """At the end run says how the command ended, the processes attached (run not
        counted) and the collector's counts, in one line on stderr."""
        log = tmp_path / "run.log"
        assert main(["run", "-o", str(log), "--", sys.executable, "-c", self.WARN]) == 0
        out, err = capfd.readouterr()
        assert out == ""
        assert err == (
            f"logfunnel run: {PYTHON} exited with 0; 1 process attached, 3 records, 0 lost, "
            "0 dropped, 0 gaps\n"
        )
        assert len(log.read_text().splitlines()) == 3

    def test_quiet_leaves_it_out(self, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
        """--quiet: nothing on stderr but what the command itself writes."""
        log = tmp_path / "run.log"
        assert main(["run", "-q", "-o", str(log), "--", sys.executable, "-c", self.WARN]) == 0
        assert capfd.readouterr().err == ""

    def test_the_default_sink_is_the_console(self, capfd: pytest.CaptureFixture[str]) -> None:
        """With no -o, --console or --config, records go to stderr."""
        assert main(["run", "-q", "--", sys.executable, "-c", self.WARN]) == 0
        err = capfd.readouterr().err.splitlines()
        assert [line.split(" s: ", 1)[1] for line in err] == ["w 0", "w 1", "w 2"]


class TestBadInput:
    @pytest.mark.parametrize("argv", [["run"], ["run", "--"], ["run", "-o", "x.log"]])
    def test_no_command_is_a_usage_error(
        self, argv: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """run without a command prints its usage and exits with 2."""
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("usage: logfunnel run [OPTIONS] -- COMMAND [ARGS...]")
        assert "no COMMAND" in err

    def test_a_command_not_found_exits_127(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A command that is not on PATH: a clear message and exit status 127."""
        assert main(["run", "--", "logfunnel-no-such-command", "arg"]) == 127
        assert capsys.readouterr().err == (
            "logfunnel run: logfunnel-no-such-command: command not found\n"
        )

    def test_a_command_that_is_not_executable_exits_126(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A file without execute permission: a clear message and exit status 126."""
        script = tmp_path / "script.sh"
        script.write_text("#!/bin/sh\necho hi\n")
        script.chmod(0o644)
        assert main(["run", "--", str(script)]) == 126
        assert capsys.readouterr().err == (
            f"logfunnel run: {script}: cannot run it: Permission denied\n"
        )

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            (["--max-bytes", "1K", "--backups", "0"], "would never rotate"),
            (["--max-bytes", "1K", "--when", "H"], "not both"),
            (["--when", "fortnight"], "when must be one of"),
            (["--interval", "0"], "interval must be 1 or more"),
            (["--encoding", "no-such-codec"], "unknown encoding"),
            (["--format", "no fields"], "Invalid format"),
            (["--max-bytes", "lots"], "not a size"),
            (["--level", "LOUD"], "unknown level"),
            (["-o", "-"], "--console writes it to stderr"),
        ],
    )
    def test_bad_sink_options_are_usage_errors(
        self, options: list[str], message: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Sink options SinkConfig refuses: its message as a usage error, exit status 2,
        and the command is not run."""
        with pytest.raises(SystemExit) as exit_info:
            main(["run", *options, "--", "sh", "-c", "echo ran"])
        assert exit_info.value.code == 2
        out, err = capsys.readouterr()
        assert message in err
        assert "ran" not in out

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            (None, "No such file or directory"),
            ("{not json", "not JSON"),
            ("[1, 2]", "holds a JSON list, not an object"),
        ],
        ids=["missing", "not-json", "not-an-object"],
    )
    def test_a_bad_config_file_is_a_usage_error(
        self, content: str | None, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A --config file that is missing, not JSON, or not a JSON object: a message naming
        the file and exit status 2."""
        path = tmp_path / "logging.json"
        if content is not None:
            path.write_text(content)
        with pytest.raises(SystemExit) as exit_info:
            main(["run", "--config", str(path), "--", "true"])
        assert exit_info.value.code == 2
        assert f"--config {path}: {message}" in capsys.readouterr().err

    def test_a_funnel_that_cannot_start_exits_2(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An -o file that cannot be opened: a message and exit status 2, the command not run."""
        log = tmp_path / "no-such-dir" / "run.log"
        assert main(["run", "-o", str(log), "--", "sh", "-c", "echo ran"]) == 2
        out, err = capsys.readouterr()
        assert err.startswith("logfunnel run: cannot start the funnel: ")
        assert "ran" not in out


class TestSinkOptions:
    """The sink options are SinkConfig's fields, so Funnel, run and serve cannot drift apart."""

    def kwargs(self, *options: str) -> dict[str, object]:
        return sink_kwargs(build_parser().parse_args(["run", *options, "--", "true"]))

    def test_every_sinkconfig_field_has_a_flag_of_run(self) -> None:
        """Each SinkConfig field is set by one of run's flags."""
        parser = build_parser()
        run = parser._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
        flags = {flag for action in run._actions for flag in action.option_strings}
        assert set(FLAGS) == {f.name for f in fields(SinkConfig)}
        assert set(FLAGS.values()) <= flags

    def test_funnels_defaults_are_sinkconfigs(self) -> None:
        """Funnel's keyword defaults are SinkConfig's, so an option left out means the same."""
        parameters = inspect.signature(logfunnel.Funnel).parameters
        for field in fields(SinkConfig):
            assert parameters[field.name].default == field.default, field.name

    @pytest.mark.parametrize(
        ("options", "expected"),
        [
            ([], {"console": True}),
            (["--console"], {"console": True}),
            (["-o", "a.log"], {"filename": "a.log"}),
            (
                ["-o", "a", "--max-bytes", "2K", "--backups", "3"],
                {"filename": "a", "max_bytes": 2048, "backups": 3},
            ),
            (
                ["-o", "a", "--when", "midnight", "--interval", "2", "--utc"],
                {"filename": "a", "when": "midnight", "interval": 2, "utc": True},
            ),
            (["-o", "a", "--encoding", "latin-1"], {"filename": "a", "encoding": "latin-1"}),
            (
                ["--format", "%(message)s", "--datefmt", "%H"],
                {"console": True, "fmt": "%(message)s", "datefmt": "%H"},
            ),
            (["--overflow", "drop"], {"console": True, "overflow": "drop"}),
            (
                ["-o", "a.jsonl", "--json"],
                {"filename": "a.jsonl", "formatter": logfunnel.JSONFormatter().options},
            ),
        ],
    )
    def test_each_flag_sets_its_field(
        self, options: list[str], expected: dict[str, object]
    ) -> None:
        """A flag gives its SinkConfig field to Funnel; what is left out is left to Funnel's
        defaults, and the console is the sink when no other is given."""
        kwargs = self.kwargs(*options)
        assert kwargs.pop("collector") == "thread"
        assert kwargs == expected
        config = SinkConfig(**kwargs)  # type: ignore[arg-type]
        for name, value in expected.items():
            wanted = os.path.abspath(str(value)) if name == "filename" else value
            assert getattr(config, name) == wanted

    def test_config_level_and_collector(self, tmp_path: Path) -> None:
        """--config reads the JSON file into config, --level gives a level number, and
        --collector is passed on."""
        path = tmp_path / "logging.json"
        path.write_text('{"version": 1}')
        kwargs = self.kwargs("--config", str(path), "--level", "info", "--collector", "process")
        assert kwargs == {"config": {"version": 1}, "level": 20, "collector": "process"}
