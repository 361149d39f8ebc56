"""``ProcessFileHandler``: one file per process, nothing shared, joined later by ``merge``.

Nothing is shared, so nothing needs a lock: every process appends to a file of
its own. Two things make the files joinable afterwards:

* **Names that never collide.** The default pattern holds the host, the pid and
  the process start time to the microsecond. A pid is unique on a host only
  while its process lives, and the start time tells a reused pid apart.
* **Lines that sort.** Each record starts with its time in UTC to the
  microsecond, fixed width, so text order is time order, and then the record's
  sequence number in its process. Lines after the first (tracebacks,
  multi-line messages) belong to the record above them. Such a line that
  would itself read as a record start gets one leading space, so
  ``logfunnel merge`` never splits a record.

A fork child never writes into its parent's file: ``os.register_at_fork`` and
a pid check in ``emit`` make it open a file under its own name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import string
import time
import weakref
from typing import Final

__all__ = ["DEFAULT_PATTERN", "RECORD_FORMAT", "RECORD_START", "ProcessFileHandler"]

#: File name pattern: ``{host}``, ``{pid}`` and ``{start}`` (the process start time).
DEFAULT_PATTERN: Final = "logfunnel-{host}-{pid}-{start}.log"

#: What follows the time and sequence number on a record's first line.
RECORD_FORMAT: Final = "%(levelname)s %(processName)s[%(process)d] %(name)s: %(message)s"

#: A record's first line starts with this: UTC time to the microsecond, then the sequence number.
RECORD_START: Final = r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (\d+) "

_FIELDS: Final = frozenset({"host", "pid", "start"})
_OPEN_FLAGS: Final = (
    os.O_WRONLY
    | os.O_APPEND
    | os.O_CREAT
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
_record_start = re.compile(RECORD_START)
_live_handlers: weakref.WeakSet[ProcessFileHandler] = weakref.WeakSet()


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "localhost"


# (pid, start time) of this process; a fork child gets its own.
_identity = (os.getpid(), time.time())


def _process_identity() -> tuple[int, float]:
    global _identity
    if _identity[0] != os.getpid():  # forked without the at-fork hooks (e.g. from C)
        _identity = (os.getpid(), time.time())
    return _identity


def _start_label(start: float) -> str:
    micros = int(start * 1_000_000)
    secs, fraction = divmod(micros, 1_000_000)
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(secs)) + f".{fraction:06d}Z"


class ProcessFileHandler(logging.Handler):
    """Write this process's records to a file of its own, in the format ``merge`` reads.

    ``pattern`` names the file; it must contain ``{pid}``, and may contain
    ``{host}`` and ``{start}``. Keep all three (as the default does) when
    files from several hosts or runs share a directory. Set a formatter to
    change what follows each record's time and sequence number. They are
    always written, so that ``logfunnel merge`` can place every record.

    Each record reaches the kernel in one write before ``emit`` returns, so a
    process that then exits, even by ``os._exit`` or SIGKILL, has lost nothing.
    """

    terminator = "\n"

    def __init__(
        self,
        pattern: str | os.PathLike[str] = DEFAULT_PATTERN,
        *,
        encoding: str = "utf-8",
        delay: bool = False,
        level: int = logging.NOTSET,
    ) -> None:
        # Absolute now, so a fork child that changed directory still writes beside its parent.
        self.pattern = os.path.abspath(os.fspath(pattern))
        fields = {field for _, field, _, _ in string.Formatter().parse(self.pattern) if field}
        if "pid" not in fields:
            raise ValueError(
                "the pattern needs {pid}: without it every process would write the same file"
            )
        if fields - _FIELDS:
            unknown = ", ".join(sorted(fields - _FIELDS))
            raise ValueError(f"unknown field(s) in pattern: {unknown}; use host, pid and start")
        super().__init__(level)
        self.encoding = encoding
        self.formatter = logging.Formatter(RECORD_FORMAT)
        self._fd: int | None = None
        self._pid = os.getpid()
        self._seq = 0
        self._stamp_second = -1
        self._stamp_prefix = ""
        self._path = self._file_name()
        if not delay:
            self._open()
        _live_handlers.add(self)

    @property
    def path(self) -> str:
        """The file this process writes (each process, fork children too, has its own)."""
        if self._pid != os.getpid():
            return self._file_name()
        return self._path

    def _file_name(self) -> str:
        pid, start = _process_identity()
        return self.pattern.format(host=_host(), pid=pid, start=_start_label(start))

    def _open(self) -> None:
        self._fd = os.open(self._path, _OPEN_FLAGS, 0o666)

    def emit(self, record: logging.LogRecord) -> None:
        """Format, prefix time and sequence number, append in one write."""
        try:
            text = self.format(record)
            if self._pid != os.getpid():
                self._after_fork()
            if self._fd is None:
                self._open()
            fd = self._fd
            assert fd is not None
            view = memoryview(self.line(record, text).encode(self.encoding, "backslashreplace"))
            while view:
                # A short write happens only on errors such as a full disk.
                view = view[os.write(fd, view) :]
            self._seq += 1
        except Exception:
            self.handleError(record)

    def line(self, record: logging.LogRecord, text: str) -> str:
        """``text`` as it goes into the file: the record start, then continuation lines."""
        if "\n" in text:
            first, *rest = text.split("\n")
            # A continuation line that looks like a record start would be split off by merge.
            rest = [" " + part if _record_start.match(part) else part for part in rest]
            text = "\n".join([first, *rest])
        return f"{self._stamp(record.created)} {self._seq} {text}{self.terminator}"

    def _stamp(self, created: float) -> str:
        micros = int(created * 1_000_000)
        second, fraction = divmod(micros, 1_000_000)
        if second != self._stamp_second:
            self._stamp_second = second
            self._stamp_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp_prefix}.{fraction:06d}Z"

    def _after_fork(self) -> None:
        """In a fork child: close our copy of the parent's file; the next record opens ours."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._pid = os.getpid()
        self._seq = 0
        self._path = self._file_name()

    def close(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            fd, self._fd = self._fd, None
            if fd is not None:
                os.close(fd)
            _live_handlers.discard(self)
        super().close()

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return f"<{type(self).__name__} {self.path} ({level})>"


def _after_fork_in_child() -> None:
    global _identity
    _identity = (os.getpid(), time.time())
    for handler in list(_live_handlers):
        handler._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
