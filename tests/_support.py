"""What the tests share: a sink that keeps records, waiting for child processes, and
reading back the log files they wrote.

Test files import it by name (conftest puts this folder on ``sys.path``). Code that
child processes run lives in the ``_*_workers`` modules instead.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from _strategy_workers import RECORD, message

from logfunnel._audit import Audit, RecordShape

#: Set by the Windows-path step of CI (``LOGFUNNEL_TRANSPORT=tcp``): every funnel that is
#: not told where to listen uses loopback TCP, the only transport Windows has.
FORCED_TCP = os.environ.get("LOGFUNNEL_TRANSPORT", "").strip().lower() == "tcp"

#: How long a test waits for one step (a child to end, an event, a queue item)
#: before calling it hung. It is below the per-test timeout, so a hang fails
#: with the wait that hung rather than with a stack dump of every thread.
JOIN_TIMEOUT = 60


# -- sinks ---------------------------------------------------------------------------


class Records(logging.Handler):
    """A sink that keeps every record it is given, in order, and can be waited on."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []
        # On the handler's own lock, which logging renews in a fork child.
        self.changed = threading.Condition(self.lock)

    def emit(self, record: logging.LogRecord) -> None:
        with self.changed:
            self.records.append(record)
            self.changed.notify_all()

    def wait_for(self, message: str, timeout: float = JOIN_TIMEOUT) -> bool:
        """Wait until a record with this message has arrived (among the last 50)."""
        with self.changed:
            return self.changed.wait_for(
                lambda: any(r.getMessage() == message for r in self.records[-50:]), timeout
            )

    def messages(self, name: str | None = "worker") -> list[str]:
        """The messages of logger ``name``'s records (every logger's with None), in order."""
        return [r.getMessage() for r in self.records if name is None or r.name == name]

    def own(self, level: int = logging.NOTSET) -> list[str]:
        """What the collector itself reported, at ``level`` or above."""
        return [
            r.getMessage() for r in self.records if r.name == "logfunnel" and r.levelno >= level
        ]


class FileRecords:
    """A file sink (so producers send bare lines: line mode), read back with the
    questions of ``Records`` once the funnel has stopped."""

    # Long enough that a cut 60 bytes into a record's line is inside it.
    FORMAT = "%(levelno)d|%(name)s|%(asctime)s|%(pathname)s|%(message)s"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handler = logging.FileHandler(path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter(self.FORMAT))

    def _records(self) -> list[tuple[int, str, str]]:
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            levelno, name, _, _, message = line.split("|", 4)
            records.append((int(levelno), name, message))
        return records

    def messages(self, name: str | None = "worker") -> list[str]:
        """As ``Records.messages``."""
        return [m for _, n, m in self._records() if name is None or n == name]

    def own(self, level: int = logging.NOTSET) -> list[str]:
        """As ``Records.own``."""
        return [m for lv, n, m in self._records() if n == "logfunnel" and lv >= level]


# -- child processes -----------------------------------------------------------------


def join_all(procs: Iterable[Any], exitcode: int | None = None) -> None:
    """Wait for each process: it must end within ``JOIN_TIMEOUT``, with ``exitcode`` if given."""
    for proc in procs:
        proc.join(JOIN_TIMEOUT)
        assert proc.exitcode is not None, f"{proc.name} did not finish"
        if exitcode is not None:
            assert proc.exitcode == exitcode, f"{proc.name} ended with {proc.exitcode}"


def run_all(ctx: Any, target: Any, arg_tuples: Sequence[tuple[Any, ...]]) -> None:
    """Start one process of ``ctx`` per argument tuple; all must finish with exit code 0.

    They are closed afterwards: a process object holds a descriptor (its
    sentinel) until then, and some tests count this process's descriptors.
    """
    procs = [ctx.Process(target=target, args=args) for args in arg_tuples]
    for proc in procs:
        proc.start()
    join_all(procs)
    assert [proc.exitcode for proc in procs] == [0] * len(procs)
    for proc in procs:
        proc.close()


# -- log files read back -------------------------------------------------------------


def dated_set(path: Path) -> list[Path]:
    """``path`` and its time-stamped backups (``.YYYY-MM-DD_HH-MM-SS``), oldest first."""
    stamped = sorted(
        p
        for p in path.parent.glob(path.name + ".*")
        if re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", p.name[len(path.name) + 1 :])
    )
    return stamped + ([path] if path.exists() else [])


def read_lines(files: Iterable[Path], encoding: str = "utf-8") -> list[str]:
    """The lines of ``files``, in the order given."""
    lines: list[str] = []
    for path in files:
        lines += path.read_text(encoding=encoding).splitlines()
    return lines


#: A line the collector itself logged (``processName`` is ``logfunnel-collector``).
COLLECTOR_NOTICE = re.compile(r" logfunnel-collector\[\d+\] [A-Z]+ ")

#: A ``_strategy_workers`` record: its marker, then exactly its ``message()``.
RECORD_SHAPE = RecordShape(RECORD, message)


def audit(files: Iterable[Path] = ()) -> Audit:
    """Read ``files`` in the order given, as one log: a worker's records keep their order
    across them (a rotated set, oldest first). More lines can be added to the result.

    Every line must be a whole record, so a line without a marker (the tail of a
    record cut in two) is torn. The collector's own notices are passed over: on a
    loaded machine a slow sink is moved to its own thread and the collector says so
    in the log, a whole record of its own, not a torn one of the run.
    """
    result = Audit(
        RECORD_SHAPE,
        order="across_files",
        keep=lambda line: COLLECTOR_NOTICE.search(line) is None,
        only_records=True,
    )
    return result.read(files)
