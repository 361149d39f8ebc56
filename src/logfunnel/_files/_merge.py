"""``logfunnel merge``: per-process files into one log, ordered by record time.

A streaming k-way merge over the files ``ProcessFileHandler`` writes. Each
input is already in time order, so a heap holding the next record start of
every input picks the earliest one. That record's continuation lines are
copied straight through until the next record start, so memory holds one line
piece per input, whatever the number of records or the size of a traceback.
Lines longer than a chunk are read in pieces.

Equal times keep the order of the inputs on the command line, and within one
input its file order. A process's records therefore stay in its own order even
if its clock stepped back; that is reported, as are lines that come before
a file's first record, since they belong to no record and cannot be placed.
More inputs than ``--max-open`` are merged in groups through temporary files
first, which keeps every guarantee above because the output is in the same
format as the inputs.

A file named more than once is merged once, and each repeat is reported.
Overlapping globs (``merge a*.log a*.log``, ``merge logs/* logs/app-*``) would
otherwise double every record of it. Files are told apart by device and inode,
not by name, so a repeat through a symlink, a hard link or another spelling of
the path is caught too.
"""

from __future__ import annotations

import heapq
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Final

from ._process import RECORD_START

__all__ = ["CHUNK", "DEFAULT_MAX_OPEN", "MergeResult", "merge_files"]


DEFAULT_MAX_OPEN: Final = 256

CHUNK: Final = 1 << 16
_SAMPLE: Final = 80
# Out-of-order records reported one by one per file; the rest are only counted.
_REPORT_EACH: Final = 5
_record_start = re.compile(RECORD_START.encode("ascii"))

Report = Callable[[str], None]


@dataclass
class MergeResult:
    """What a merge wrote, and what it could not place."""

    records: int = 0
    files: int = 0
    #: Lines before their file's first record: not in the output.
    unplaced: int = 0
    #: Records earlier than the record before them in the same file (kept in file order).
    out_of_order: int = 0
    #: Inputs that named a file already given (by any path): left out, so it is merged once.
    repeated: int = 0

    @property
    def ok(self) -> bool:
        return self.unplaced == 0


class _Source:
    """One input, read as pieces of at most ``CHUNK`` bytes, each knowing if it starts a line."""

    def __init__(self, path: str, report: Report | None, result: MergeResult) -> None:
        self.path = path
        self.file = open(path, "rb")  # noqa: SIM115 - closed by the merge loop
        self.lineno = 0
        self._at_line_start = True
        self._last_key = b""
        self._late = 0
        self._report = report
        self._result = result

    def _piece(self) -> tuple[bytes, bool]:
        piece = self.file.readline(CHUNK)
        starts = self._at_line_start
        if not piece:
            if not starts:  # the file ends inside a line: end that line
                self._at_line_start = True
                return b"\n", False
            return b"", True
        if starts:
            self.lineno += 1
        self._at_line_start = piece.endswith(b"\n")
        return piece, starts

    def _key(self, piece: bytes) -> bytes | None:
        match = _record_start.match(piece)
        if match is None:
            return None
        key = match.group(1)
        if key < self._last_key:
            self._late += 1
            if self._report is not None:
                self._result.out_of_order += 1
                if self._late <= _REPORT_EACH:
                    self._report(
                        f"{self.path}:{self.lineno}: record is earlier than the one before it "
                        "(did the clock step back?); kept after it, in file order"
                    )
        self._last_key = key
        return key

    def first(self) -> tuple[bytes, bytes] | None:
        """The first record start; the lines before it cannot be placed and are reported."""
        skipped = 0
        sample = b""
        while True:
            piece, starts = self._piece()
            if not piece:
                break
            if starts:
                key = self._key(piece)
                if key is not None:
                    self._skipped(skipped, sample, found=True)
                    return key, piece
                skipped += 1
                sample = sample or piece
        self._skipped(skipped, sample, found=False)
        return None

    def _skipped(self, count: int, sample: bytes, *, found: bool) -> None:
        if not count or self._report is None:
            return
        self._result.unplaced += count
        where = "line 1" if count == 1 else f"lines 1-{count}"
        text = sample.rstrip(b"\r\n")[:_SAMPLE].decode("utf-8", "backslashreplace")
        why = (
            "come before its first record"
            if found
            else "hold no record start (is it a ProcessFileHandler file?)"
        )
        self._report(f"{self.path}: {where} {why}; not placed. First: {text!r}")

    def copy_record_rest(self, out: IO[bytes]) -> tuple[bytes, bytes] | None:
        """Copy the current record's remaining lines to ``out``; then the next record start."""
        while True:
            piece, starts = self._piece()
            if not piece:
                return None
            if starts:
                key = self._key(piece)
                if key is not None:
                    return key, piece
            out.write(piece)

    def close(self) -> None:
        if self._late > _REPORT_EACH and self._report is not None:
            self._report(f"{self.path}: {self._late} records in all earlier than their predecessor")
        self.file.close()


def _merge_into(
    paths: Sequence[str], out: IO[bytes], result: MergeResult, report: Report | None
) -> int:
    """One k-way merge of ``paths`` into ``out``; the number of records written."""
    sources: list[_Source] = []
    heap: list[tuple[bytes, int, bytes]] = []
    written = 0
    try:
        for index, path in enumerate(paths):
            source = _Source(path, report, result)
            sources.append(source)
            head = source.first()
            if head is not None:
                heap.append((head[0], index, head[1]))
        heapq.heapify(heap)
        while heap:
            _, index, piece = heap[0]
            out.write(piece)
            written += 1
            head = sources[index].copy_record_rest(out)
            if head is None:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (head[0], index, head[1]))
    finally:
        for source in sources:
            source.close()
    return written


def merge_files(
    paths: Sequence[str],
    out: IO[bytes],
    *,
    report: Report | None = None,
    max_open: int = DEFAULT_MAX_OPEN,
    scratch: str | None = None,
) -> MergeResult:
    """Merge ``paths`` into ``out`` by record time; ``report`` hears about what cannot be placed.

    At most ``max_open`` inputs are open at once. Beyond that, groups are merged
    into temporary files under ``scratch`` first.
    """
    if max_open < 2:
        raise ValueError("max_open must be at least 2")
    result = MergeResult()
    say = report if report is not None else (lambda _: None)
    distinct = _distinct(paths, result, say)
    result.files = len(distinct)
    result.records = _merge_level(distinct, out, result, say, max_open, scratch)
    return result


def _distinct(paths: Sequence[str], result: MergeResult, report: Report) -> list[str]:
    """``paths`` without the ones that name a file already given; each repeat is reported."""
    first: dict[object, str] = {}
    distinct: list[str] = []
    for path in paths:
        st = os.stat(path)
        # A filesystem without inode numbers reports 0 for every file: compare resolved paths.
        key = (st.st_dev, st.st_ino) if st.st_ino else os.path.normcase(os.path.realpath(path))
        if key not in first:
            first[key] = path
            distinct.append(path)
            continue
        result.repeated += 1
        earlier = first[key]
        if earlier == path:
            report(f"{path}: given more than once; merged once")
        else:
            report(f"{path}: the same file as {earlier}; merged once")
    return distinct


def _merge_level(
    paths: list[str],
    out: IO[bytes],
    result: MergeResult,
    report: Report | None,
    max_open: int,
    scratch: str | None,
) -> int:
    # ``report`` is None below the first level: the groups were checked already.
    if len(paths) <= max_open:
        return _merge_into(paths, out, result, report)
    with tempfile.TemporaryDirectory(prefix="logfunnel-merge-", dir=scratch) as tmp:
        groups: list[str] = []
        for start in range(0, len(paths), max_open):
            group = os.path.join(tmp, f"group-{len(groups)}.log")
            with open(group, "wb") as part:
                _merge_into(paths[start : start + max_open], part, result, report)
            groups.append(group)
        return _merge_level(groups, out, result, None, max_open, scratch)


# -- the command ---------------------------------------------------------------
