"""``LockedFileHandler``: unrelated processes share one file, and rotation loses nothing.

A shared ``RotatingFileHandler`` loses records because every process rotates
on its own. One renames the file while another still writes into the old one
through its open descriptor, and a later rotation deletes or renames over that
file, records and all. Plain appends are not the problem. On a local POSIX
filesystem, a write to a descriptor opened with ``O_APPEND`` lands whole at the
end of the file, even when several processes write at once.

The design, on POSIX:

* Each record is one ``os.write`` to an ``O_APPEND`` descriptor.
* The cross-process lock is ``flock`` on a separate file, ``.NAME.lock`` beside
  ``NAME`` (``logs/app.log`` is locked through ``logs/.app.log.lock``). It is
  never renamed, so it guards the whole rotated set. It lives in the same
  directory, so on the same filesystem as the files it guards, and its name is
  hidden and outside ``app.log*``, the pattern that log shippers, rotation
  tools and people use for the rotated set. ``flock`` rather than
  ``lockf`` because a lock belongs to one open file description: two handlers
  on the same path exclude each other even inside one process, and closing
  some other descriptor of the file does not drop the lock. The kernel drops
  it when its owner dies, SIGKILL included.
* A write takes the lock **shared**: writers never wait for each other, only
  for a rotation. Under the shared lock the handler checks that its descriptor
  is still the file at ``path`` (same device and inode) and reopens if another
  process rotated it. Rotation is impossible while any writer holds the shared
  lock, so nothing can rename or delete the file between the check and the
  write.
* Rotation takes the lock **exclusive**, then checks again whether it is still
  due, because another process may have rotated while this one waited. Only
  then does it move files, so each full file is rotated exactly once.

Where appends are not atomic (Windows, and network filesystems such as NFS,
whose clients append by writing at the size they last saw), ``lock_writes=True``
takes the lock exclusive around every write instead. That is the default on
Windows, where ``msvcrt`` offers no shared lock and an open file cannot be
renamed, so the file is also closed after each write.

With several writers at once, a file may pass ``max_bytes`` by a few records
before one of them rotates it. ``lock_writes=True`` makes the limit exact.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import sys
import time
import weakref
from typing import Final

__all__ = ["LockedFileHandler", "check_size_rotation"]

_OPEN_FLAGS: Final = (
    os.O_WRONLY
    | os.O_APPEND
    | os.O_CREAT
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
_LOCK_FLAGS: Final = (
    os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
)
_NOTE_SIZE: Final = 128

_live_handlers: weakref.WeakSet[LockedFileHandler] = weakref.WeakSet()


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int, exclusive: bool) -> None:
        # msvcrt has only exclusive locks; LK_LOCK itself retries for 10 s.
        while True:
            os.lseek(fd, 0, os.SEEK_SET)
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                return
            except OSError:
                continue

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

    _SHARED_LOCKS = False
else:
    import fcntl

    def _lock(fd: int, exclusive: bool) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

    _SHARED_LOCKS = True


def check_size_rotation(max_bytes: int, backups: int) -> None:
    """Refuse ``max_bytes`` without backups, for every handler logfunnel makes.

    The stdlib's reading (size rotation silently off) leaves the file without
    the limit its owner asked for; deleting the full file instead would lose
    records.
    """
    if max_bytes and not backups:
        raise ValueError(
            f"max_bytes={max_bytes} with backups=0 would never rotate: give backups=1 or "
            "more to keep that many full files, or leave out max_bytes for one file "
            "without a size limit"
        )


class LockedFileHandler(logging.Handler):
    """Write to ``path`` from any number of processes at once, rotating without loss.

    Every process that logs to the file makes its own handler on the same
    path, with the same rotation settings. The processes need no common
    parent: cron jobs and processes started by unrelated launchers can share
    one file. Rotation, by the settings given:

    * ``max_bytes`` > 0: size rotation. Before a record would take the file
      past ``max_bytes``, the file becomes ``path.1``, older backups move up
      one number, and exactly ``backups`` of them are kept (``path.1`` is the
      newest). ``backups`` must be at least 1 here. The stdlib's
      ``RotatingFileHandler`` takes ``backupCount=0`` as "size rotation off",
      so a file given a size limit grows without one and nobody is told;
      this handler raises ``ValueError`` instead.
    * ``when`` (``"S"``, ``"M"``, ``"H"``, ``"D"``, ``"midnight"`` or
      ``"W0"``-``"W6"``) and ``interval``: time rotation. Each file is named
      for the start of its period, ``path.YYYY-MM-DD_HH-MM-SS`` for ``"S"``
      and shorter for coarser units. The newest ``backups`` of them are kept;
      ``backups=0`` keeps every one, as in the stdlib. That is a sensible
      choice here, unlike with size rotation: the files still rotate, and an
      archive of every day is a common need.
    * neither: one file that is never rotated; ``backups`` is unused.

    ``backups`` defaults to 5, as in ``Funnel``'s ``filename`` shortcut.
    Periods are aligned to the clock (local time unless ``utc``), so every
    process agrees on the boundaries.

    The lock file is ``lock_path``, ``.NAME.lock`` in the log's directory
    (see the module notes). It is never rotated; delete it only when no
    process has the file open.

    Each record reaches the kernel before ``emit`` returns, so a process that
    exits, even by ``os._exit`` or SIGKILL, has lost nothing it logged.
    """

    terminator = "\n"

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_bytes: int = 0,
        backups: int = 5,
        when: str | None = None,
        interval: int = 1,
        encoding: str = "utf-8",
        *,
        utc: bool = False,
        lock_writes: bool | None = None,
        level: int = logging.NOTSET,
    ) -> None:
        if max_bytes < 0 or backups < 0:
            raise ValueError("max_bytes and backups cannot be negative")
        if max_bytes and when:
            raise ValueError("choose size rotation (max_bytes) or time rotation (when), not both")
        check_size_rotation(max_bytes, backups)
        super().__init__(level)
        self.path = os.path.abspath(os.fspath(path))
        directory, name = os.path.split(self.path)
        #: The file whose ``flock`` guards the rotated set: hidden, so not in ``NAME*``.
        self.lock_path = os.path.join(directory, f".{name}.lock")
        self.max_bytes = max_bytes
        self.backups = backups
        self.encoding = encoding
        self.schedule = _Schedule(when, interval, utc) if when else None
        #: Take the lock exclusive around every write (see the module notes).
        self.lock_writes = (not _SHARED_LOCKS) if lock_writes is None else lock_writes
        self._keep_open = sys.platform != "win32"
        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None
        self._lock_fd: int | None = None
        # The period start of the open file, known only under the exclusive lock.
        self._period: float | None = None
        self._rollover_at = -math.inf if self.schedule else math.inf
        self._pid = os.getpid()
        self._open_lock()
        if self._keep_open:
            self._reopen()
        _live_handlers.add(self)

    # -- the logging path --------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        """Format, then append as one write under the cross-process lock."""
        try:
            data = (self.format(record) + self.terminator).encode(self.encoding, "backslashreplace")
            if self._pid != os.getpid():
                self._after_fork()
            self.write(data)
        except Exception:
            self.handleError(record)

    def write(self, data: bytes) -> None:
        """Append ``data`` as one record, rotating first if it is due."""
        if self._lock_fd is None:
            self._open_lock()
        lock_fd = self._lock_fd
        assert lock_fd is not None
        if not self.lock_writes:
            _lock(lock_fd, exclusive=False)
            try:
                if self._append_unless_due(data):
                    return
            finally:
                _unlock(lock_fd)
        _lock(lock_fd, exclusive=True)
        try:
            self._rotate_if_due_then_append(data)
        finally:
            _unlock(lock_fd)

    def _append_unless_due(self, data: bytes) -> bool:
        """Under the shared lock: append, or return False when a rotation is due."""
        size = self._current_size()
        if self._size_due(size, len(data)) or (
            self.schedule is not None and time.time() >= self._rollover_at
        ):
            return False
        self._append(data)
        return True

    def _rotate_if_due_then_append(self, data: bytes) -> None:
        """Under the exclusive lock: decide again, because another process may have rotated."""
        size = self._current_size()
        if self.schedule is not None:
            if time.time() >= self._rollover_at or self._period is None:
                self._time_rotation(size)
        elif self._size_due(size, len(data)):
            self.rotate()
            self._reopen()
        self._append(data)

    def _size_due(self, size: int, incoming: int) -> bool:
        # An empty file takes any record, however big: rotating it would loop.
        return 0 < self.max_bytes < size + incoming and size > 0

    def _current_size(self) -> int:
        """Reopen if our descriptor is no longer the file at ``path``; the size of that file."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        if st is None or self._fd is None or (st.st_dev, st.st_ino) != self._ident:
            self._reopen()
            assert self._fd is not None
            st = os.fstat(self._fd)
        return st.st_size

    def _append(self, data: bytes) -> None:
        fd = self._fd
        assert fd is not None
        written = os.write(fd, data)
        if written < len(data):
            # Only on errors such as a full disk; the rest follows as it can.
            view = memoryview(data)[written:]
            while view:
                view = view[os.write(fd, view) :]
        if not self._keep_open:
            self._close_file()

    # -- rotation (always under the exclusive lock) ------------------------

    def rotate(self) -> None:
        """Move the current file aside; called under the exclusive lock, only when due.

        Size rotation shifts ``path.N`` to ``path.N+1`` (newest first, so no
        rename overwrites a file still in the set) and deletes those past
        ``backups``. Time rotation renames the file for the period it covers
        and deletes the oldest past ``backups`` (none if ``backups`` is 0).
        A name that already exists is never overwritten: the file then stays
        current one more period.
        """
        directory, base = os.path.split(self.path)
        if self.schedule is None:
            pattern = re.compile(re.escape(base) + r"\.([1-9][0-9]*)")
            found = sorted(
                (
                    int(m.group(1))
                    for name in os.listdir(directory)
                    if (m := pattern.fullmatch(name))
                ),
                reverse=True,
            )
            for number in found:
                old = f"{self.path}.{number}"
                if number >= self.backups:
                    os.remove(old)
                else:
                    os.replace(old, f"{self.path}.{number + 1}")
            os.replace(self.path, self.path + ".1")
            return
        assert self._period is not None
        target = f"{self.path}.{self.schedule.suffix(self._period)}"
        if os.path.lexists(target):
            return
        os.replace(self.path, target)
        if self.backups:
            pattern = re.compile(re.escape(base) + r"\." + self.schedule.suffix_pattern)
            dated = sorted(name for name in os.listdir(directory) if pattern.fullmatch(name))
            for name in dated[: -self.backups]:
                os.remove(os.path.join(directory, name))

    def _time_rotation(self, size: int) -> None:
        schedule = self.schedule
        assert schedule is not None
        assert self._fd is not None
        now_period = schedule.start(time.time())
        period = self._read_period()
        if period is None:
            # A file this handler has no note for: judge it by its last write.
            period = schedule.start(os.fstat(self._fd).st_mtime) if size else now_period
        if period < now_period:
            if size:
                self._period = period
                self.rotate()
                self._reopen()
            # Periods only grow, so rotated names never repeat, even if the clock steps back.
            period = max(now_period, schedule.next(period))
        self._period = period
        self._write_period(period)
        self._rollover_at = schedule.next(period)

    def _read_period(self) -> float | None:
        """The current file's period, from the lock file's note, if the note is about this file."""
        fd = self._lock_fd
        assert fd is not None
        os.lseek(fd, 0, os.SEEK_SET)
        fields = os.read(fd, _NOTE_SIZE).split()
        try:
            dev, ino, period = int(fields[0]), int(fields[1]), float(fields[2])
        except (IndexError, ValueError):
            return None
        return period if (dev, ino) == self._ident else None

    def _write_period(self, period: float) -> None:
        fd = self._lock_fd
        assert fd is not None
        assert self._ident is not None
        note = f"{self._ident[0]} {self._ident[1]} {period!r}\n".encode()
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, note.ljust(_NOTE_SIZE - 1) + b"\n")

    # -- descriptors -------------------------------------------------------

    def _reopen(self) -> None:
        self._close_file()
        fd = os.open(self.path, _OPEN_FLAGS, 0o666)
        st = os.fstat(fd)
        self._fd = fd
        self._ident = (st.st_dev, st.st_ino)
        self._period = None

    def _close_file(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _open_lock(self) -> None:
        self._lock_fd = os.open(self.lock_path, _LOCK_FLAGS, 0o666)

    def _after_fork(self) -> None:
        """In a fork child: drop the inherited descriptors, never the parent's lock.

        An inherited ``flock`` descriptor shares its lock with the parent, so
        the child must not lock through it. Closing our copy leaves the
        parent's untouched. The child opens its own on its next record.
        """
        self._pid = os.getpid()
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._lock_fd = None
        self._ident = None
        self._period = None

    def close(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            # In a fork child these are our own copies: closing them leaves the parent's lock alone.
            self._close_file()
            fd, self._lock_fd = self._lock_fd, None
            if fd is not None:
                os.close(fd)
            _live_handlers.discard(self)
        super().close()

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return f"<{type(self).__name__} {self.path} ({level})>"


def _after_fork_in_child() -> None:
    for handler in list(_live_handlers):
        handler._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


_SECONDS: Final = {"S": 1, "M": 60, "H": 3600}
_SUFFIXES: Final = {
    "S": ("%Y-%m-%d_%H-%M-%S", r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}"),
    "M": ("%Y-%m-%d_%H-%M", r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}"),
    "H": ("%Y-%m-%d_%H", r"\d{4}-\d{2}-\d{2}_\d{2}"),
    "D": ("%Y-%m-%d", r"\d{4}-\d{2}-\d{2}"),
}
# date(1970, 1, 1).toordinal(); that day was a Thursday (weekday 3).
_EPOCH_ORDINAL: Final = 719163


class _Schedule:
    """Clock-aligned periods, so that every process draws the same boundaries."""

    def __init__(self, when: str, interval: int, utc: bool) -> None:
        when = when.upper()
        if interval < 1:
            raise ValueError("interval must be at least 1")
        self.utc = utc
        if when in _SECONDS:
            self.step = _SECONDS[when] * interval
            self.days = 0
            unit = when
        elif when in ("D", "MIDNIGHT"):
            self.days = interval
            self.reference = _EPOCH_ORDINAL
            unit = "D"
        elif len(when) == 2 and when[0] == "W" and when[1] in "0123456":
            # Weeks start at midnight on the chosen weekday (W0 is Monday).
            self.days = 7 * interval
            self.reference = _EPOCH_ORDINAL + (int(when[1]) - 3) % 7
            unit = "D"
        else:
            raise ValueError(
                f"invalid rotation interval {when!r}: use S, M, H, D, midnight or W0-W6"
            )
        self.when = when
        self.format, self.suffix_pattern = _SUFFIXES[unit]

    def _tm(self, t: float) -> time.struct_time:
        return time.gmtime(t) if self.utc else time.localtime(t)

    def start(self, t: float) -> float:
        """The start of the period that contains ``t``."""
        if not self.days:
            offset = 0 if self.utc else self._tm(t).tm_gmtoff
            return math.floor((t + offset) / self.step) * self.step - offset
        tm = self._tm(t)
        ordinal = _ordinal(tm.tm_year, tm.tm_mon, tm.tm_mday)
        return self._midnight(ordinal - (ordinal - self.reference) % self.days)

    def next(self, start: float) -> float:
        """The start of the period after the one that starts at ``start``."""
        if not self.days:
            return start + self.step
        tm = self._tm(start)
        return self._midnight(_ordinal(tm.tm_year, tm.tm_mon, tm.tm_mday) + self.days)

    def _midnight(self, ordinal: int) -> float:
        if self.utc:
            return float((ordinal - _EPOCH_ORDINAL) * 86400)
        from datetime import date

        day = date.fromordinal(ordinal)
        return time.mktime((day.year, day.month, day.day, 0, 0, 0, 0, 0, -1))

    def suffix(self, start: float) -> str:
        return time.strftime(self.format, self._tm(start))


def _ordinal(year: int, month: int, day: int) -> int:
    from datetime import date

    return date(year, month, day).toordinal()
