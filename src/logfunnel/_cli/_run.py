"""``logfunnel run [OPTIONS] -- COMMAND [ARGS...]``: one log from every process of a command.

It starts a funnel with the sinks the options give (``_sinks``), runs
COMMAND with the funnel's address in its environment, waits, drains the
funnel, says one summary line on stderr and ends as COMMAND ended. Every
Python process of COMMAND's tree, however it was started (a shell script,
``subprocess``, ``multiprocessing``, a pool a library makes), attaches
itself as it starts (the startup hook), so its records land in the log with
no change to the program.

With no sink option the log goes to the console (stderr): where a program's
records went before, now with every process's in one stream. A program that
also logs to stderr with a handler of its own then shows those lines twice;
``-o FILE`` is the usual way.

COMMAND is run as a shell runs a foreground command: stdin, stdout and
stderr are run's own, it stays in run's process group (so the terminal's
job control, Ctrl-Z and reading from the terminal work as without run), and
a signal run finds ignored (``nohup``) stays ignored for it.

Signals. While COMMAND runs, run passes signals on to it, and survives them
itself until COMMAND ends, so that the log is always drained:

* SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 are sent on to COMMAND: a service
  manager, ``docker stop`` or ``kill PID`` send them to the one process they
  know, which is run.
* SIGINT and SIGQUIT, the keyboard's signals, are sent on only when COMMAND
  has left run's process group (``setsid``, as some servers do). A terminal
  sends them to its whole foreground process group, COMMAND included, and so
  does ``kill -INT -PGID``: passing them on would deliver them twice, and a
  second SIGINT cuts short the clean-up the first one started. So a SIGINT
  sent to run's pid alone does not reach a COMMAND in its group: signal the
  group, as the terminal does, or send SIGTERM.
* A signal that came before COMMAND was being started is sent on once it
  has started (a keyboard signal that came while it was being started
  reached it with the group's).

A signal sent to the whole group that run also passes on (``kill -TERM
-PGID``, a terminal hanging up) reaches COMMAND twice; most programs end at
the first.

Exit status: COMMAND's. If a signal killed COMMAND, run ends itself by the
same signal once the log is drained (a shell shows 128+N, and a shell loop
stops on Ctrl-C as it would for COMMAND), except for signals that dump core,
where it exits with 128+N rather than dump a core of its own. Called
in-process (``main([...])``) it returns 128+N. COMMAND not found: 127; found
but not runnable: 126; bad options or a funnel that cannot start: 2.

``--capture-output`` is for programs that print rather than log, or are not
Python. COMMAND's stdout and stderr become pipes that run reads: every byte
is passed on to run's own stdout and stderr as it arrives, unchanged, so
what the user sees (or redirects) is as before; and every line also becomes
a record of logger ``stdout`` (INFO) or ``stderr`` (WARNING), with COMMAND's
pid and name as the record's process. Recording alone would hide a
program's output from the person running it, and tee-ing is what
``| tee`` users expect. Lines are decoded as UTF-8 with undecodable bytes
kept as ``\\xNN``; a line ends at ``\\n`` (a ``\\r`` before it is dropped); a
last line without a newline is a record too; a line longer than
``MAX_LINE`` characters is cut into several records. ``--level`` applies to
these records as to any (``--level WARNING`` keeps the stderr lines only);
without it they are all recorded, whatever the root level. Where the two streams
interleave, their records may not keep that order (two pipes have no common
order). The costs of a pipe: COMMAND no longer sees a terminal, so a
program that colours or line-buffers only for a terminal behaves as when
redirected; and output still being written by processes that outlive
COMMAND is read only up to COMMAND's end. If run's own stdout goes away
(``| head``), COMMAND's stdout pipe is closed too, so COMMAND gets SIGPIPE
as it would have. A Python program's records reach the log anyway; what it
also prints to stderr with a handler of its own is then recorded twice.

The summary line (``--quiet`` leaves it out) says how COMMAND ended, how many
processes attached (run itself not counted, nor programs that are not
Python), how many records the collector took (and how many of them are
captured lines), and what its counts say was lost on the way (records missing
from a producer's sequence, or cut short when a producer was killed),
dropped (records a sink failed to write or dropped), and the gaps in
producers' sequences. It counts records, not records by level: line mode
counts a run of lines with one ``bytes.count`` and reads no level.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import logging
import os
import select
import selectors
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import IO, Any, Final

from .._funnel import Funnel
from ._sinks import add_sink_arguments, sink_kwargs

__all__ = ["HELP", "MAX_LINE", "Lines", "add_arguments", "run"]

HELP = "run a command with every Python process it starts logging into one log"

#: The longest captured line, in characters; a longer one is cut into several records.
MAX_LINE: Final = 1 << 20

_READ_SIZE: Final = 1 << 16


def _signals(*names: str) -> tuple[signal.Signals, ...]:
    return tuple(getattr(signal, name) for name in names if hasattr(signal, name))


#: Sent on to COMMAND: senders address them to the one process they know.
_PASSED_ON: Final = _signals("SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2")
#: The keyboard's signals: the terminal sends them to COMMAND too.
_KEYBOARD: Final = _signals("SIGINT", "SIGQUIT")
#: Signals whose default action dumps core: run exits with 128+N instead of taking them.
_CORE: Final = _signals(
    "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGSEGV", "SIGXCPU",
    "SIGXFSZ", "SIGSYS",
)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "logfunnel run [OPTIONS] -- COMMAND [ARGS...]"
    parser.epilog = (
        "Signals: SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 are passed on to COMMAND; SIGINT and "
        "SIGQUIT (Ctrl-C, Ctrl-\\) reach COMMAND from the terminal, which signals the whole "
        "foreground process group, so they are passed on only if COMMAND left run's process "
        "group. Exit status: COMMAND's (run ends by the signal that killed COMMAND); "
        "127 if COMMAND is not found, 126 if it cannot be run, 2 for bad options."
    )
    add_sink_arguments(parser)
    parser.add_argument(
        "--capture-output",
        action="store_true",
        help="also record each line COMMAND writes to stdout (logger 'stdout', INFO) and "
        "stderr (logger 'stderr', WARNING); the output is still passed through unchanged",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no summary line on stderr at the end"
    )
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, metavar="COMMAND", help="the command and its args"
    )


def _say(message: str) -> None:
    print(f"logfunnel run: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Run COMMAND inside a funnel; its exit status (see the module's docstring)."""
    command: list[str] = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        args._sink_parser.error("no COMMAND: logfunnel run [OPTIONS] -- COMMAND [ARGS...]")
    options = sink_kwargs(args)
    level: int | None = options.get("level")
    # Before the funnel starts, so that its SIGTERM drain leaves SIGTERM to run.
    relay = _Relay()
    relay.install()
    try:
        try:
            funnel = Funnel(**options).start()
        except (OSError, ValueError, TypeError, RuntimeError) as exc:
            _say(f"cannot start the funnel: {exc}")
            return 2
        try:
            returncode, captured = _run_command(command, relay, args.capture_output, level)
        finally:
            funnel.stop()
    finally:
        relay.restore()
    if returncode is None:
        return relay.exec_status
    if not args.quiet:
        _say(_summary(command, returncode, funnel, captured))
    if returncode < 0:
        args.end_signal = -returncode if -returncode not in _CORE else None
        return 128 - returncode
    return returncode


def _run_command(
    command: Sequence[str], relay: _Relay, capture: bool, level: int | None
) -> tuple[int | None, int | None]:
    """Run ``command`` to its end: its ``Popen.returncode`` (None: it could not start), and
    how many lines of its output were recorded (None: not captured)."""
    pipe = subprocess.PIPE if capture else None
    relay.starting()
    try:
        child = subprocess.Popen(command, stdout=pipe, stderr=pipe)
    except OSError as exc:
        relay.exec_status, message = _exec_error(command[0], exc)
        _say(message)
        return None, None
    reader = None
    if capture:
        assert child.stdout is not None
        assert child.stderr is not None
        reader = _Capture(child.pid, command[0], child.stdout, child.stderr, level)
        reader.start()
    relay.started(child)
    returncode = relay.wait()
    if reader is None:
        return returncode, None
    reader.finish()
    return returncode, reader.recorded


def _exec_error(program: str, exc: OSError) -> tuple[int, str]:
    """The exit status and message for a COMMAND that could not start, as a shell gives them."""
    if isinstance(exc, FileNotFoundError):
        if os.sep not in program and (os.altsep is None or os.altsep not in program):
            return 127, f"{program}: command not found"
        if os.path.exists(program):  # its #! line names a program that is not there
            return 126, f"{program}: cannot run it: its interpreter was not found"
        return 127, f"{program}: no such file"
    return 126, f"{program}: cannot run it: {exc.strerror or exc}"


def _summary(command: Sequence[str], returncode: int, funnel: Funnel, captured: int | None) -> str:
    stats = funnel.stats
    name = os.path.basename(command[0])
    if returncode < 0:
        try:
            ended = f"{name} was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            ended = f"{name} was killed by signal {-returncode}"
    else:
        ended = f"{name} exited with {returncode}"
    me = os.getpid()
    processes = sum(1 for producer in stats.producers if producer[1] != me)
    lost = stats.missing_records + stats.partial_frames
    dropped = stats.sink_dropped + stats.sink_errors
    records = f"{stats.records} record{'s' if stats.records != 1 else ''}"
    if captured is not None:
        records += f" ({captured} captured line{'s' if captured != 1 else ''})"
    return (
        f"{ended}; {processes} process{'es' if processes != 1 else ''} attached, {records}, "
        f"{lost} lost, {dropped} dropped, {stats.gaps} gap{'s' if stats.gaps != 1 else ''}"
    )


class _Relay:
    """run's handlers of the signals it passes on, for as long as a run lasts (see above).

    Python runs signal handlers in the main thread, between two bytecodes;
    but the kernel may deliver a signal to any thread, the collector's too,
    and then a main thread blocked in ``waitpid`` would never run the
    handler. So the main thread waits in ``select`` on a wake-up pipe
    (``signal.set_wakeup_fd``) that every signal writes to, whichever thread
    takes it, SIGCHLD included, and looks whether COMMAND has ended each
    time it wakes.
    """

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        #: COMMAND has ended: nothing more is sent to its pid.
        self.ended = False
        #: The exit status for a COMMAND that could not start (127, 126).
        self.exec_status = 0
        self._early: list[int] = []  # came before COMMAND had a pid
        self._spawning = False
        self._before: dict[int, Any] = {}
        self._wake: tuple[int, int] | None = None
        self._wakeup_before = -1

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set there
        for signum in (*_PASSED_ON, *_KEYBOARD):
            before = signal.getsignal(signum)
            if before == signal.SIG_IGN:
                continue  # ignored (nohup): it stays so, for run and for COMMAND
            self._before[signum] = before
            signal.signal(signum, self._on_signal)
        if hasattr(signal, "SIGCHLD"):
            self._wake = os.pipe()
            for fd in self._wake:
                os.set_blocking(fd, False)
            self._wakeup_before = signal.set_wakeup_fd(self._wake[1], warn_on_full_buffer=False)
            # A handler, so that COMMAND's end writes to the wake-up pipe too.
            self._before[signal.SIGCHLD] = signal.getsignal(signal.SIGCHLD)
            signal.signal(signal.SIGCHLD, _nothing)

    def restore(self) -> None:
        for signum, before in self._before.items():
            signal.signal(signum, before)
        self._before.clear()
        if self._wake is not None:
            signal.set_wakeup_fd(self._wakeup_before)
            for fd in self._wake:
                os.close(fd)
            self._wake = None

    def wait(self) -> int:
        """Wait for COMMAND to end, running the handlers meanwhile; its ``returncode``."""
        child = self.child
        assert child is not None
        if self._wake is not None:
            while not self._has_ended(child):
                select.select([self._wake[0]], [], [])
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake[0], 512):
                        pass
        self.ended = True
        return child.wait()

    @staticmethod
    def _has_ended(child: subprocess.Popen[bytes]) -> bool:
        if not hasattr(os, "waitid"):
            return child.poll() is not None
        # Without reaping it: until ``ended`` is set, the pid stays COMMAND's,
        # whatever signal comes to be sent on.
        try:
            state = os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped already (SIGCHLD was ignored)
            return True
        return state is not None

    def starting(self) -> None:
        """COMMAND is being started: from now on it is in the group a keyboard signal reaches."""
        self._spawning = True

    def started(self, child: subprocess.Popen[bytes]) -> None:
        self.child = child
        while self._early:
            self._send(self._early.pop(0))

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.ended:
            return
        if self.child is None:
            # Before COMMAND was being started, nothing sent to the group reached it;
            # since, a keyboard signal has (to it, or to what is about to become it).
            if signum not in _KEYBOARD or not self._spawning:
                self._early.append(signum)
        elif signum not in _KEYBOARD or self._left_group():
            self._send(signum)

    def _left_group(self) -> bool:
        assert self.child is not None
        if not hasattr(os, "getpgid"):
            return False
        try:
            return os.getpgid(self.child.pid) != os.getpgrp()
        except OSError:
            return False

    def _send(self, signum: int) -> None:
        assert self.child is not None
        if not self.ended and self.child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child.pid, signum)


def _nothing(signum: int, frame: FrameType | None) -> None:
    """A handler that does nothing: the wake-up pipe is what a signal is for here."""


class Lines:
    """Bytes of one stream in, whole lines out: UTF-8, ``\\xNN`` for bytes that are not.

    A multi-byte character cut between two reads is kept whole; ``end()``
    gives the last line even without its newline.
    """

    def __init__(self, limit: int = MAX_LINE) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("backslashreplace")
        self._text = ""
        self._limit = limit

    def feed(self, data: bytes) -> list[str]:
        self._text += self._decoder.decode(data)
        *lines, self._text = self._text.split("\n")
        lines = [line.removesuffix("\r") for line in lines]
        while len(self._text) > self._limit:
            lines.append(self._text[: self._limit])
            self._text = self._text[self._limit :]
        return lines

    def end(self) -> list[str]:
        rest = self._text + self._decoder.decode(b"", final=True)
        self._text = ""
        return [rest.removesuffix("\r")] if rest else []


class _Stream:
    """One of COMMAND's output pipes: where its bytes go on to, and its records."""

    def __init__(self, pipe: IO[bytes], logger: str, level: int, out: int) -> None:
        self.pipe = pipe
        self.logger = logging.getLogger(logger)
        self.level = level
        #: run's own descriptor the bytes are passed on to (None: no longer).
        self.out: int | None = out
        self.lines = Lines()
        #: At its end, or no longer read: its pipe is closed.
        self.done = False


class _Capture:
    """Reads COMMAND's stdout and stderr in one thread: passes the bytes on, records lines."""

    def __init__(
        self,
        pid: int,
        program: str,
        stdout: IO[bytes],
        stderr: IO[bytes],
        level: int | None,
    ) -> None:
        self._pid = pid
        self._path = program
        self._name = os.path.basename(program)
        self._threshold = logging.NOTSET if level is None else level
        self._streams = [
            _Stream(stdout, "stdout", logging.INFO, 1),
            _Stream(stderr, "stderr", logging.WARNING, 2),
        ]
        #: Lines recorded so far.
        self.recorded = 0
        self._wake_read, self._wake_write = os.pipe()
        self._thread = threading.Thread(target=self._serve, name="logfunnel-capture", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> None:
        """COMMAND has ended: read what its pipes hold now, then stop."""
        os.write(self._wake_write, b"x")
        self._thread.join()
        os.close(self._wake_read)
        os.close(self._wake_write)

    def _serve(self) -> None:
        selector = selectors.DefaultSelector()
        for stream in self._streams:
            os.set_blocking(stream.pipe.fileno(), False)
            selector.register(stream.pipe, selectors.EVENT_READ, stream)
        selector.register(self._wake_read, selectors.EVENT_READ, None)
        ending = False
        try:
            while not ending and any(not stream.done for stream in self._streams):
                for key, _ in selector.select():
                    if key.data is None:
                        ending = True
                        continue
                    stream = key.data
                    self._read(stream, until_empty=False)
                    if stream.done:
                        selector.unregister(stream.pipe)
                        stream.pipe.close()
            # COMMAND has ended: what its pipes hold now is all that is read.
            for stream in self._streams:
                if not stream.done:
                    self._read(stream, until_empty=True)
                    self._record(stream, stream.lines.end())
        finally:
            selector.close()
            for stream in self._streams:
                stream.pipe.close()

    def _read(self, stream: _Stream, until_empty: bool) -> None:
        """Read what ``stream`` has (one read, or ``until_empty``); sets ``done`` at its end."""
        fd = stream.pipe.fileno()
        while not stream.done:
            try:
                data = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                stream.done = True
                self._record(stream, stream.lines.end())
                return
            self._pass_on(stream, data)
            self._record(stream, stream.lines.feed(data))
            if not until_empty:
                return

    def _pass_on(self, stream: _Stream, data: bytes) -> None:
        if stream.out is None:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(stream.out, view) :]
        except BrokenPipeError:
            # The reader of run's output went away (``| head``): COMMAND's
            # writes are to fail too, as they would have without run.
            stream.out = None
            stream.done = True
        except OSError:
            stream.out = None  # nowhere to show it: still recorded

    def _record(self, stream: _Stream, lines: list[str]) -> None:
        if stream.level < self._threshold:
            return
        logger = stream.logger
        for line in lines:
            record = logger.makeRecord(logger.name, stream.level, self._path, 0, line, (), None)
            record.process = self._pid
            record.processName = self._name
            logger.handle(record)
            self.recorded += 1
