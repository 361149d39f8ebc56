"""What the tests share: a sink that keeps records, waiting for child processes, and
reading back the log files they wrote.

Test files import it by name (conftest puts this folder on ``sys.path``). Code that
child processes run lives in the ``_*_workers`` modules instead.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _strategy_workers import RECORD, message

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


def numbered_set(path: Path) -> list[Path]:
    """``path`` and its numbered backups (``.1``, ``.2``, ...), oldest first."""
    backups = sorted(
        (int(p.name[len(path.name) + 1 :]), p)
        for p in path.parent.glob(path.name + ".*")
        if p.name[len(path.name) + 1 :].isdigit()
    )
    return [p for _, p in reversed(backups)] + ([path] if path.exists() else [])


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


@dataclass
class Audit:
    """Lines of ``_strategy_workers`` records, each judged against its exact ``message()``."""

    counts: dict[tuple[int, int], int] = field(default_factory=dict)
    torn: list[str] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)
    _last: dict[int, int] = field(default_factory=dict)

    def add(self, line: str) -> None:
        match = RECORD.search(line)
        if match is None:
            self.torn.append(line)
            return
        worker, number = int(match.group(1)), int(match.group(2))
        if match.group(0) != message(worker, number):
            self.torn.append(line)
            return
        self.counts[(worker, number)] = self.counts.get((worker, number), 0) + 1
        if number <= self._last.get(worker, -1):
            self.out_of_order.append(line)
        self._last[worker] = number

    def missing(self, workers: int, count: int) -> list[tuple[int, int]]:
        return [(w, n) for w in range(workers) for n in range(count) if (w, n) not in self.counts]

    def doubled(self) -> dict[tuple[int, int], int]:
        return {key: n for key, n in self.counts.items() if n > 1}


#: A line the collector itself logged (``processName`` is ``logfunnel-collector``).
COLLECTOR_NOTICE = re.compile(r" logfunnel-collector\[\d+\] [A-Z]+ ")


def audit(files: Iterable[Path], keep: re.Pattern[str] | None = None) -> Audit:
    """Read ``files`` in the order given; only lines matching ``keep`` count, if given.

    The collector's own notices are passed over: on a loaded machine a slow
    sink is moved to its own thread and the collector says so in the log, a
    whole record of its own, not a torn one of the run.
    """
    result = Audit()
    for path in files:
        with path.open(encoding="utf-8") as handle:
            for raw in handle:
                line = raw.rstrip("\n")
                if COLLECTOR_NOTICE.search(line):
                    continue
                if keep is None or keep.search(line):
                    result.add(line)
    return result
