"""The records every way writes, and the audit that reads them back.

Each message carries its worker and sequence number in a fixed-width marker,
followed by filler up to the requested size, so that one reader can count
every record in any way's output whatever the line format around it: lost
(expected but absent), duplicated (present more than once), reordered (a
worker's sequence going backwards within a file) and torn (the marker is
there but the rest of the message is not exactly what was logged).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Final

__all__ = [
    "FMT_BRACES",
    "FMT_PERCENT",
    "MIN_SIZE",
    "Audit",
    "audit",
    "marker",
    "message",
    "padding",
]

#: The logging call's format, ``%``-style for stdlib loggers.
FMT_PERCENT: Final = "[bench w=%03d s=%08d] %s"
#: The same message for ``str.format``-style loggers (loguru).
FMT_BRACES: Final = "[bench w={:03d} s={:08d}] {}"

_MARK: Final = b"[bench w="
# "[bench w=" 3 digits " s=" 8 digits "] " filler
_W: Final = slice(9, 12)
_S: Final = slice(15, 23)
_TAIL: Final = 23
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
    at = line.find("[bench w=")
    if at < 0:
        return None
    try:
        return int(line[at + _W.start : at + _W.stop]), int(line[at + _S.start : at + _S.stop])
    except ValueError:
        return None


@dataclass
class Audit:
    """What the output holds compared with what the workers logged."""

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


def audit(paths: Iterable[str | os.PathLike[str]], workers: int, records: int, size: int) -> Audit:
    """Count the records of ``workers`` x ``records`` messages of ``size`` found in ``paths``.

    Lines without the marker (a way's own notices, for example) are ignored.
    A record counts as present only if its whole message is intact, so a
    torn record is both ``torn`` and ``lost``. Order is checked per file,
    since a file is where a reader sees it.
    """
    tail = b"] " + padding(size).encode()
    counts = [bytearray(records) for _ in range(workers)]
    written = duplicated = reordered = torn = total_bytes = 0
    for path in paths:
        total_bytes += os.path.getsize(path)
        last = [-1] * workers
        # Line by line, so that reading a big log back does not inflate the
        # harness's own memory, which is where a collector's peak RSS is measured.
        with open(path, "rb") as handle:
            for raw in handle:
                at = raw.find(_MARK)
                if at < 0:
                    continue
                body = raw[at:].rstrip(b"\n")
                try:
                    worker = int(body[_W])
                    seq = int(body[_S])
                except ValueError:
                    torn += 1
                    continue
                if body[_TAIL:] != tail or not (0 <= worker < workers and 0 <= seq < records):
                    torn += 1
                    continue
                written += 1
                seen = counts[worker]
                if seen[seq]:
                    duplicated += 1
                else:
                    seen[seq] = 1
                if seq < last[worker]:
                    reordered += 1
                else:
                    last[worker] = seq
    lost = sum(seen.count(0) for seen in counts)
    return Audit(
        expected=workers * records,
        written=written,
        lost=lost,
        duplicated=duplicated,
        reordered=reordered,
        torn=torn,
        bytes=total_bytes,
    )
