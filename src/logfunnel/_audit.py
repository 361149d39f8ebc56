"""Reading a log back and accounting for every record: the audit.

``logfunnel demo``, the repository's benchmark and the tests each read back
what many workers logged and ask the same questions: was each record written
once, whole, and in its worker's order? One reader answers them for all three,
so that lost, duplicated, reordered and torn mean the same thing in the demo's
summary, in the benchmark's table and in a failing test.

The demo ships in the wheel, so the audit lives in the package, as a leaf that
imports nothing else of it. No worker imports it.

Records are known by (worker, number), and a caller says how to find one on a
line (a :class:`RecordShape`). Seen records are counted in one ``bytearray``
per worker, a byte per record number, not in a dict of tuples: the benchmark
reads logs of millions of records back inside the process whose peak memory it
reports, and a dict entry per record would cost some hundred bytes each.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

__all__ = [
    "SAMPLE_CHARS",
    "SAMPLE_LINES",
    "TORN",
    "Audit",
    "Counts",
    "Found",
    "Order",
    "RecordShape",
    "Summary",
    "Tally",
    "numbered_set",
]

#: What a record shape says of a line that holds a record's marker but not
#: the record exactly as it was logged.
TORN: Final = "torn"

#: What a record shape finds on a line: the (worker, number) of an intact
#: record, ``TORN``, or None when the line has no record marker at all.
Found: TypeAlias = "tuple[int, int] | Literal['torn'] | None"

#: Where a worker's records must keep their order: through the files read one
#: after the other, as one log (a rotated set, oldest first), or within each
#: file only (files whose order among themselves means nothing).
Order: TypeAlias = Literal["across_files", "per_file"]

#: How many offending lines a tally keeps, and how much of each: enough for a
#: failing test or a report to show what went wrong, never a copy of the log.
SAMPLE_LINES: Final = 10
SAMPLE_CHARS: Final = 300

_SATURATED: Final = 255


@dataclass(frozen=True)
class RecordShape:
    """How a record looks on a line.

    ``marker`` is searched for on each line; its named groups ``worker`` and
    ``number`` give the record's identity. A marker whose groups did not match
    (the pattern may make them optional) is a torn record: the start of one is
    there, its identity is not. With ``message``, the record is intact only if
    the line, from the marker to its end, is exactly ``message(worker,
    number)``, so a record cut short, run into another or with bytes changed
    is torn rather than counted; without it, the marker alone counts.
    """

    marker: re.Pattern[str]
    message: Callable[[int, int], str] | None = None

    def __call__(self, line: str) -> Found:
        found = self.marker.search(line)
        if found is None:
            return None
        worker, number = found.group("worker", "number")
        if worker is None or number is None:
            return TORN
        key = int(worker), int(number)
        if self.message is not None and line[found.start() :] != self.message(*key):
            return TORN
        return key


@dataclass
class Tally:
    """How many lines were found wrong in one way, with the first few of them.

    The lines are kept (cut short, and only ``SAMPLE_LINES`` of them) so that
    a failing ``assert not result.torn`` shows what the damage looks like,
    while a log full of it still costs no more than a count.
    """

    count: int = 0
    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.count += 1
        if len(self.lines) < SAMPLE_LINES:
            self.lines.append(line[:SAMPLE_CHARS])

    def __bool__(self) -> bool:
        return self.count > 0


class Counts(Mapping[tuple[int, int], int]):
    """How often each (worker, number) was read intact: a read-only view of the counters.

    Only records read at least once are keys. A count stops at 255: it says
    "more than once", and ``Audit.duplicated`` has the exact total.
    """

    def __init__(self, counters: dict[int, bytearray]) -> None:
        self._counters = counters

    def __getitem__(self, key: tuple[int, int]) -> int:
        worker, number = key
        counter = self._counters.get(worker)
        if counter is None or not 0 <= number < len(counter) or not counter[number]:
            raise KeyError(key)
        return counter[number]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for worker in sorted(self._counters):
            counter = self._counters[worker]
            for number, count in enumerate(counter):
                if count:
                    yield worker, number

    def __len__(self) -> int:
        return sum(len(counter) - counter.count(0) for counter in self._counters.values())


@dataclass(frozen=True)
class Summary:
    """The audit's counts alone, for a report: what the demo prints and the benchmark keeps.

    Plain numbers, so that keeping one per run keeps none of the counters.
    ``lost`` counts records that never arrived whole (a torn record is lost
    unless another copy of it is intact); ``bytes`` is the size of the files.
    """

    expected: int
    written: int
    lost: int
    duplicated: int
    reordered: int
    torn: int
    bytes: int

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.reordered or self.torn)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Audit:
    """The records of a log read back, each counted by (worker, number).

    ``shape`` finds records on lines, ``order`` says whether a worker's
    sequence must hold across the files read or within each one. Lines that
    ``keep`` rejects are passed over (a collector's own notices, for one).
    Lines without a marker are ignored unless ``only_records``: then the log
    is meant to hold nothing but records, and such a line (the tail of a
    record cut in two, say) is torn.

    With ``workers`` and ``records``, the audit knows what was logged: a
    record outside that range is torn (it was never logged as such), the
    counters are sized once, and ``summary()`` can say what was lost.
    Without them the counters grow as records are read.

    A record read again is ``duplicated``; a record read after a higher number
    of its worker is ``reordered`` (the sequence went backwards), so a record
    repeated at once is duplicated but not reordered.
    """

    def __init__(
        self,
        shape: Callable[[str], Found],
        *,
        order: Order,
        workers: int | None = None,
        records: int | None = None,
        keep: Callable[[str], bool] | None = None,
        only_records: bool = False,
    ) -> None:
        if (workers is None) != (records is None):
            raise ValueError("give both workers and records, or neither")
        if order not in ("across_files", "per_file"):
            raise ValueError(f"order must be 'across_files' or 'per_file', not {order!r}")
        self.shape = shape
        self.order = order
        self.workers = workers
        self.records = records
        self.keep = keep
        self.only_records = only_records
        #: Intact records read, each copy counted.
        self.written = 0
        #: Intact copies beyond the first of their record.
        self.duplicated = 0
        #: Bytes of the files read.
        self.bytes = 0
        self.torn = Tally()
        self.reordered = Tally()
        self._counters: dict[int, bytearray] = {}
        self._last: dict[int, int] = {}

    def read(self, paths: Iterable[str | os.PathLike[str]]) -> Audit:
        """Read ``paths`` in the order given, line by line (a big log is never held whole)."""
        for path in paths:
            self.bytes += os.path.getsize(path)
            if self.order == "per_file":
                self._last.clear()
            with open(path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    self.add(line.rstrip("\n"))
        return self

    def add(self, line: str) -> None:
        """Account for one line (without its end of line)."""
        if self.keep is not None and not self.keep(line):
            return
        found = self.shape(line)
        if found is None:
            if self.only_records:
                self.torn.add(line)
            return
        if isinstance(found, str):
            self.torn.add(line)
            return
        worker, number = found
        counter = self._counters.get(worker)
        if counter is None or not 0 <= number < len(counter):
            counter = self._counter(worker, number)
            if counter is None:
                self.torn.add(line)
                return
        self.written += 1
        count = counter[number]
        if count:
            self.duplicated += 1
        if count < _SATURATED:
            counter[number] = count + 1
        if number < self._last.get(worker, -1):
            self.reordered.add(line)
        else:
            self._last[worker] = number

    def _counter(self, worker: int, number: int) -> bytearray | None:
        """Worker ``worker``'s counters, made or grown to hold ``number``; None if out of range."""
        if worker < 0 or number < 0:
            return None
        if self.workers is not None and self.records is not None:
            if worker >= self.workers or number >= self.records:
                return None
            counter = self._counters.get(worker)
            if counter is None:
                counter = self._counters[worker] = bytearray(self.records)
            return counter
        counter = self._counters.setdefault(worker, bytearray())
        if number >= len(counter):
            # Doubling, so that a worker's counters are copied a few times, not per record.
            counter.extend(bytes(max(number + 1, 2 * len(counter), 64) - len(counter)))
        return counter

    @property
    def counts(self) -> Counts:
        return Counts(self._counters)

    def doubled(self) -> dict[tuple[int, int], int]:
        """The records read more than once, with their counts."""
        return {key: count for key, count in self.counts.items() if count > 1}

    def missing(
        self, workers: int | None = None, records: int | None = None
    ) -> list[tuple[int, int]]:
        """The records of ``workers`` x ``records`` (by default the audit's) never read intact."""
        workers, records = self._range(workers, records)
        empty = bytearray()
        return [
            (worker, number)
            for worker in range(workers)
            for counter in (self._counters.get(worker, empty),)
            for number in range(records)
            if number >= len(counter) or not counter[number]
        ]

    def summary(self) -> Summary:
        """The counts for a report; the audit must have been given ``workers`` and ``records``."""
        workers, records = self._range(None, None)
        # Given a range, the audit counts only records in it, each worker's in `records` bytes.
        present = sum(records - counter.count(0) for counter in self._counters.values())
        return Summary(
            expected=workers * records,
            written=self.written,
            lost=workers * records - present,
            duplicated=self.duplicated,
            reordered=self.reordered.count,
            torn=self.torn.count,
            bytes=self.bytes,
        )

    def _range(self, workers: int | None, records: int | None) -> tuple[int, int]:
        workers = self.workers if workers is None else workers
        records = self.records if records is None else records
        if workers is None or records is None:
            raise ValueError("the audit does not know how many workers and records were logged")
        return workers, records


def numbered_set(path: Path) -> list[Path]:
    """``path`` and its numbered backups (``.1``, ``.2``, ...), oldest first.

    A size-rotated log is read in this order (``.N`` is older than ``.N-1``),
    so that a worker's records read as one sequence across the set.
    """
    backups = sorted(
        (int(p.name[len(path.name) + 1 :]), p)
        for p in path.parent.glob(path.name + ".*")
        if p.name[len(path.name) + 1 :].isdigit()
    )
    return [p for _, p in reversed(backups)] + ([path] if path.exists() else [])
