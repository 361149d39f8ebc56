"""The records every way writes, and how the audit reads them back.

Each message carries its worker and sequence number in a fixed-width marker,
followed by filler up to the requested size, so that one reader can count
every record in any way's output whatever the line format around it: lost
(expected but absent), duplicated (present more than once), reordered (a
worker's sequence going backwards within a file) and torn (the marker is
there but the rest of the message is not exactly what was logged). The
reader is the package's audit, the one ``logfunnel demo`` and the tests use.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from typing import Final

from logfunnel._audit import TORN, Audit, Found, RecordShape, Summary

__all__ = [
    "FMT_BRACES",
    "FMT_PERCENT",
    "MIN_SIZE",
    "audit",
    "marker",
    "message",
    "padding",
]

#: The logging call's format, ``%``-style for stdlib loggers.
FMT_PERCENT: Final = "[bench w=%03d s=%08d] %s"
#: The same message for ``str.format``-style loggers (loguru).
FMT_BRACES: Final = "[bench w={:03d} s={:08d}] {}"

#: Where a record starts; a marker whose fields are not digits is a torn record.
_MARKER: Final = re.compile(r"\[bench w=(?:(?P<worker>\d{3}) s=(?P<number>\d{8}))?")
# "[bench w=" 3 digits " s=" 8 digits "] " filler
_PREFIX_LEN: Final = 25

#: The shortest message that still has one character of filler.
MIN_SIZE: Final = _PREFIX_LEN + 1


def padding(size: int) -> str:
    """The filler that makes a message exactly ``size`` characters long."""
    return "x" * max(1, size - _PREFIX_LEN)


def message(worker: int, seq: int, size: int) -> str:
    """The message worker ``worker`` logs as record ``seq``, as it must appear in the output."""
    return FMT_PERCENT % (worker, seq, padding(size))


def marker(line: str) -> tuple[int, int] | None:
    """(worker, sequence) of the record on ``line``, or None if it has none."""
    found = _MARKER.search(line)
    if found is None or found.group("worker") is None:
        return None
    return int(found.group("worker")), int(found.group("number"))


def _json_or_text(shape: RecordShape) -> Callable[[str], Found]:
    """``shape`` for text lines; for a JSON line (a way that writes JSON), ``shape`` of
    its ``message``, and a line that is not strict JSON is torn."""

    def find(line: str) -> Found:
        if not line.startswith("{"):
            return shape(line)
        try:
            value = json.loads(line, parse_constant=_refuse)
        except ValueError:
            return TORN if shape(line) is not None else None
        message = value.get("message") if isinstance(value, dict) else None
        if not isinstance(message, str):
            return TORN if shape(line) is not None else None
        return shape(message)

    return find


def _refuse(constant: str) -> object:
    raise ValueError(f"{constant} is not JSON")


def audit(
    paths: Iterable[str | os.PathLike[str]], workers: int, records: int, size: int
) -> Summary:
    """Count the records of ``workers`` x ``records`` messages of ``size`` found in ``paths``.

    Lines without the marker (a way's own notices, for example) are ignored.
    A record counts as present only if its whole message is intact, so a
    torn record is both ``torn`` and ``lost``. Order is checked per file,
    since a file is where a reader sees it, and the order among a way's files
    (one per process, say) means nothing. Only the summary is returned: the
    harness keeps one per run, and the audit's counters would stay in the
    process whose peak memory the next run measures.
    """
    filler = padding(size)
    shape = RecordShape(_MARKER, lambda worker, seq: FMT_PERCENT % (worker, seq, filler))
    checked = Audit(_json_or_text(shape), order="per_file", workers=workers, records=records)
    return checked.read(paths).summary()
