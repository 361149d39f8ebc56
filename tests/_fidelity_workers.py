"""The program whose log must read the same in one process and under logfunnel.

It lives in an importable module so that spawn and forkserver children find
it by name, and so that its exception classes have the same module name in
the test process and in every worker. Nothing here configures logging.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import logging
import sys
import threading
import uuid
from typing import Any

log = logging.getLogger("program")

REQUEST_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")
DAY = datetime.date(2024, 1, 2)
PRICE = decimal.Decimal("1.50")


class Role(enum.Enum):
    ADMIN = "admin"


class Level(enum.IntEnum):
    HIGH = 3


class Who:
    """An object whose str() is not its repr (the repr has an address)."""

    def __str__(self) -> str:
        return "who-is-it"


class BrokenStr:
    """An object whose str() raises."""

    def __str__(self) -> str:
        raise RuntimeError("no str for you")


class AppError(ValueError):
    """A plain subclass: the collector may use the real class."""


class FancyError(Exception):
    """A class with its own __init__ and __str__: the collector must not run them."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code

    def __str__(self) -> str:
        return f"fancy failure, code {self.code}"


def _lookup(table: dict[str, Any], key: str) -> Any:
    return table["missing"] + table[key]


def _wrapped() -> None:
    try:
        _lookup({}, "k")
    except KeyError as exc:
        raise AppError("could not look it up") from exc


def _fancy() -> None:
    try:
        _ = 1 / 0
    except ZeroDivisionError:
        raise FancyError(42)  # noqa: B904 - the implicit context is the point


def _multiline(items: list[int]) -> int:
    return (
        items[0]
        + items[7]
    )  # fmt: skip


def _open_missing() -> None:
    with open("/nonexistent/logfunnel/file.txt"):
        pass


def _with_notes() -> None:
    error = ValueError("with notes")
    if sys.version_info >= (3, 11):
        error.add_note("first note")
        error.add_note("second\nnote")
    raise error


def _group() -> None:
    if sys.version_info >= (3, 11):
        raise ExceptionGroup(  # noqa: F821 - 3.11+
            "several", [ValueError("one"), AppError("two"), TypeError("three")]
        )
    raise ValueError("no groups before 3.11")


def _name_error() -> None:
    wanted = 1  # noqa: F841 - the name the suggestion finds
    print(wantd)  # type: ignore[name-defined]  # noqa: F821 - "Did you mean" on 3.12+


def _attribute_error() -> None:
    class Box:
        wanted = 1

    print(Box().wantd)  # type: ignore[attr-defined]


EXCEPTIONS = [_wrapped, _fancy, lambda: _multiline([1]), _open_missing, _with_notes, _group]
if sys.version_info >= (3, 12):
    # Before 3.12 only the exceptiongroup backport, which pytest loads here and
    # a spawned worker does not, makes suggestions: the two runs would differ
    # by what each process imported, not by logfunnel.
    EXCEPTIONS += [_name_error, _attribute_error]


def log_exception(index: int) -> None:
    """Log ``EXCEPTIONS[index]``'s exception with log.exception."""
    try:
        EXCEPTIONS[index]()
    except Exception:
        log.exception("failed at step %d of %s", index, "the job", extra={"step": index})


def log_chained() -> None:
    """One exception with a cause, its carets and a plain subclass."""
    log_exception(0)


def _stack_in_a_thread() -> None:
    # A thread's stack starts at threading's bootstrap in every process, so its
    # stack_info is the same in one process and in a worker.
    def inner() -> None:
        log.warning("where am I", stack_info=True)

    thread = threading.Thread(target=inner, name="stack-thread")
    thread.start()
    thread.join()


def program() -> None:
    """Every kind of record the one-process comparison covers."""
    log.debug("debug %s", "detail")
    log.info("user %s has %d items at %.2f", "alice", 3, 1.5)
    log.info("id %s role %s day %s price %s who %s", REQUEST_ID, Role.ADMIN, DAY, PRICE, Who())
    log.info("level %d and %s, repr %r", Level.HIGH, Level.HIGH, PRICE)
    log.warning(
        "with extras",
        extra={
            "request_id": REQUEST_ID,
            "role": Role.ADMIN,
            "day": DAY,
            "price": PRICE,
            "who": Who(),
            "pair": (1, 2),
            "count": 5,
            "tags": ["a", "b"],
            "meta": {"k": 1, "nested": [True, None]},
        },
    )
    log.error("%(who)s did %(what)s", {"who": "bob", "what": "it"})
    log.info({"event": "structured", "n": 1})
    for index in range(len(EXCEPTIONS)):
        log_exception(index)
    log.error("no exception here", exc_info=True)
    _stack_in_a_thread()
    log.critical("the end")


def bad_values() -> None:
    """Values whose str() raises, as an argument and as an extra."""
    log.warning("broken %s", BrokenStr(), extra={"broken": BrokenStr(), "fine": 1})
