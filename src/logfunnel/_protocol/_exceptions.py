"""Exceptions as plain data: taken apart in the producer, rebuilt in the collector.

A sink formats ``record.exc_info`` with its own code: ``Formatter.formatException``
(or an override of it), python-json-logger, rich's ``Traceback``, the
OpenTelemetry handler. So the collector does not send them text: it rebuilds
objects they can read, from plain data the producer sent. Nothing received is
ever unpickled or evaluated.

What a collector-side ``exc_info`` is
-------------------------------------

``(type(exc), exc, exc.__traceback__)`` with a real exception instance and a
chain of real ``types.TracebackType`` objects, so that
``logging.Formatter().formatException`` and ``traceback.format_exception``
print what they print in the producer, caret lines (3.11+) and chained
causes included.

* The exception's class is the original one only when that costs no code of
  anybody's: a built-in ``Exception`` subclass (``KeyError``, ``OSError``,
  ``ExceptionGroup``...), or a class already imported in the collector whose
  whole hierarchy adds nothing to a built-in one (``class MyError(ValueError):
  pass``). Building those runs only the interpreter's own C code. Any other
  class (one with an ``__init__``, a ``__str__``, a property, a metaclass; one
  of a module the collector has not imported; a ``BaseException`` that is not
  an ``Exception``) is a *stand-in*: a class made here, with the original
  ``__name__``, ``__module__`` and ``__qualname__``, derived from
  :class:`StandIn` and from the nearest built-in exception class of the
  original (so ``isinstance(exc, ValueError)`` still holds), whose ``str()`` is
  the producer's. Nothing of the user's class runs in the collector. A real
  class whose ``str()`` would not come out as in the producer (``KeyError(('a',
  1))`` whose key travelled as text) is replaced by its stand-in too.
* ``exc.args`` are the producer's where JSON holds them faithfully, else
  their ``str()``; ``__notes__``, ``__cause__``, ``__context__`` and
  ``__suppress_context__`` are as the producer's ``traceback`` module saw
  them (contexts it would not print are not sent); exception groups keep
  their members; a ``SyntaxError`` keeps its file, line, offsets and text.
* Each traceback entry is a real frame whose code object has the producer's
  file name, function name, line and (3.11+) column span, made by compiling a
  fixed stub (``def f(): yield``, from an AST of our own, never from received
  text) and relocating it, so ``tb_lasti``, ``f_lasti`` and
  ``co_positions()`` give the producer's positions. The frames have no locals
  and no globals of the producer (``capture_locals`` and rich's
  ``show_locals`` show none) and no caller chain.
* Source lines and carets come, as for every traceback, from ``linecache``:
  the collector host's copy of the file. Workers on the collector's host (the
  usual case) share the producer's files, so the text is the producer's. When
  the file is not there (a worker on another host, a zip the collector cannot
  read) the line and its carets are left out, as the stdlib does for any
  frame without source. The producer's line text travels anyway (the text
  fallback shows it) but is never put into ``linecache``: that cache is
  global to the process and keyed by file name only, so seeding it would
  show one host's source for another's file, for every later traceback of
  that process, and grow without bound.
* Limits keep a hostile or pathological exception bounded: at most
  ``MAX_EXCEPTIONS`` chained or grouped exceptions, ``MAX_ENTRIES`` traceback
  entries (``MAX_FRAMES`` distinct ones) and ``MAX_JSON`` bytes per record.
  What is cut is said in the message of the exception it was cut from. An
  exception that cannot be taken apart travels as its formatted text in
  ``exc_text`` (with ``exc_info`` None), as before.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import sys
import threading
import traceback
import types
from collections.abc import Generator, Sequence
from typing import Any, Final, NoReturn, cast

from ._codec import FrameError, json_value

__all__ = [
    "MAX_ENTRIES",
    "MAX_EXCEPTIONS",
    "MAX_FRAMES",
    "MAX_JSON",
    "StandIn",
    "decode_exception",
    "encode_exception",
]

#: Most exceptions (chained causes and contexts, group members) per record.
MAX_EXCEPTIONS: Final = 256
#: Most traceback entries per record, all exceptions together. A
#: RecursionError's thousand frames fit.
MAX_ENTRIES: Final = 8192
#: Most distinct frames per record; each costs the collector a code object.
MAX_FRAMES: Final = 2048
#: Largest exception JSON per record. JSON decodes into up to some 25 times
#: its size in objects before it can be checked, so this bounds what one
#: record can make the collector allocate.
MAX_JSON: Final = 2 * 1024 * 1024
# Strings longer than this are cut when the whole would exceed MAX_JSON.
_SHORT_STRING: Final = 4096
_CUT_MARK: Final = " ...[logfunnel: cut {} of {} characters]"
_LINE_LIMIT: Final = 2**31 - 1

_NODE_KEYS: Final = frozenset("mqnbsaofcxpgykih")
# The suffixes 3.12+ add after str(exc) of a NameError or AttributeError.
_SUGGESTION: Final = re.compile(
    r"(?:\. Did you mean: '([^']+)'\?)?(?:(?: Or d|\. D)id you forget to import '[^']+'\?)?"
)
_REQUIRED_KEYS: Final = frozenset("qnbsf")

# What ``class E(ValueError): pass`` (or with a docstring) has in its __dict__.
_PLAIN_CLASS_KEYS: Final = frozenset(
    {
        "__module__",
        "__qualname__",
        "__doc__",
        "__dict__",
        "__weakref__",
        "__firstlineno__",
        "__static_attributes__",
    }
)


def _made_in_c(cls: type) -> bool:
    """A class of the interpreter's own: a static type, or one made in C with no methods
    (``ExceptionGroup``), never a class defined in Python and put into builtins."""
    return not cls.__flags__ & (1 << 9) or vars(cls).keys() <= _PLAIN_CLASS_KEYS  # 9: heap type


# Built-in exception classes by name, fixed when this module is imported.
_BUILTINS: Final[dict[str, type[BaseException]]] = {
    name: value
    for name, value in vars(builtins).items()
    if type(value) is type and issubclass(value, BaseException) and _made_in_c(value)
}
_BUILTIN_SET: Final = frozenset(_BUILTINS.values())
_GROUP: Final[type[BaseException] | None] = _BUILTINS.get("BaseExceptionGroup")


# -- the producer's side --------------------------------------------------------------


def encode_exception(exc_info: Any) -> bytes | None:
    """The JSON of ``exc_info`` for the wire, or None if it cannot be taken apart.

    ``(None, None, None)`` (``exc_info=True`` outside an ``except``) becomes
    ``null``, which ``print_exception`` formats as ``NoneType: None`` on both
    sides. The traversal is the stdlib's own ``TracebackException`` with
    ``compact=True``, as ``print_exception`` (so ``formatException``) makes
    it, so exactly what that prints is sent: the same chain, the same
    suggestions ("Did you mean"), the same source lines.
    """
    try:
        _, value, tb = exc_info
        if value is None:
            return b"null"
        if not isinstance(value, BaseException):
            return None
        te = traceback.TracebackException(type(value), value, tb, compact=True)
        data = _describe(te, value)
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        raw = text.encode("utf-8", "backslashreplace")
        if len(raw) > MAX_JSON:
            _shorten(data)
            text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
            raw = text.encode("utf-8", "backslashreplace")
            if len(raw) > MAX_JSON:
                return None
        return raw
    except Exception:  # a hostile __str__, __notes__ or metaclass: send text instead
        return None


def _describe(te: traceback.TracebackException, value: BaseException) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = []
    frames: list[list[Any]] = []
    frame_index: dict[tuple[Any, ...], int] = {}
    pending: list[tuple[Any, BaseException | None]] = [(te, value)]
    entries_left = MAX_ENTRIES
    position = 0
    while position < len(pending):
        node_te, exc = pending[position]
        node, cut = _node(node_te, exc)
        entries: list[int] = []
        stack = list(node_te.stack)
        room = min(entries_left, MAX_FRAMES - len(frames))
        if len(stack) > room:
            cut.append(f"{len(stack) - room} traceback entries")
            stack = stack[: room // 2] + stack[len(stack) - (room - room // 2) :]
        for summary in stack:
            key = _frame_key(summary)
            index = frame_index.get(key)
            if index is None:
                index = frame_index[key] = len(frames)
                frames.append(list(key))
            entries.append(index)
        entries_left -= len(entries)
        node["f"] = entries
        links: list[tuple[str, Any, Any]] = [
            ("c", node_te.__cause__, getattr(exc, "__cause__", None)),
            ("x", node_te.__context__, getattr(exc, "__context__", None)),
        ]
        for link, child_te, child in links:
            if child_te is None:
                continue
            if len(pending) < MAX_EXCEPTIONS:
                node[link] = len(pending)
                pending.append((child_te, child))
            else:
                cut.append(f"{_count(child_te)} chained exceptions")
        members_te = getattr(node_te, "exceptions", None)
        if members_te and _GROUP is not None and isinstance(exc, _GROUP):
            group: Any = exc
            members = []
            for member_te, member in zip(members_te, group.exceptions, strict=False):
                if len(pending) < MAX_EXCEPTIONS:
                    members.append(len(pending))
                    pending.append((member_te, member))
            if len(members) < len(members_te):
                cut.append(f"{len(members_te) - len(members)} grouped exceptions")
            if members:
                node["g"] = members
                node["k"] = _safe_string(group.message, "message")
            else:
                cut.append("the group")
        if cut:
            node["s"] += f" [logfunnel: left out {', '.join(cut)}]"
        nodes.append(node)
        position += 1
    return {"e": nodes, "f": frames}


def _node(
    te: traceback.TracebackException, exc: BaseException | None
) -> tuple[dict[str, Any], list[str]]:
    cls = type(exc)
    module = cls.__module__
    if not isinstance(module, str):
        module = None
    elif module == "__mp_main__" and sys.modules.get("__mp_main__") is sys.modules.get("__main__"):
        # A spawn or forkserver child runs the parent's script as __mp_main__;
        # in one process the same class is __main__'s, printed without a prefix.
        module = "__main__"
    message = _safe_string(exc, "exception")
    shown = getattr(te, "_str", message)
    node: dict[str, Any] = {
        "m": module,
        "q": str(cls.__qualname__),
        "n": str(cls.__name__),
        "b": _builtin_base(cls),
        "s": message,
    }
    if isinstance(shown, str) and shown != message:
        # What the traceback module adds to str(exc) (3.12+: "Did you mean"):
        # the collector's makes it again from the same hint, so that str(exc)
        # stays the producer's. What it cannot make again is kept in the text.
        hint = _SUGGESTION.fullmatch(shown[len(message) :]) if shown.startswith(message) else None
        wrong = getattr(exc, "name", None)
        if (
            hint is not None
            and isinstance(exc, (NameError, AttributeError))
            and isinstance(wrong, str)
            and "." not in (hint.group(1) or "")
        ):
            node["h"] = [wrong, hint.group(1)]
        else:
            node["s"] = shown
    args = getattr(exc, "args", ())
    if isinstance(args, tuple) and args:
        node["a"] = [json_value(arg) for arg in args]
    notes = getattr(te, "__notes__", None)
    if notes is not None:
        if isinstance(notes, Sequence) and not isinstance(notes, (str, bytes)):
            node["o"] = [_safe_string(note, "note") for note in notes]
        else:
            node["o"] = [_safe_string(notes, "__notes__", repr)]
    if getattr(exc, "__suppress_context__", False):
        node["p"] = True
    if isinstance(exc, SyntaxError):
        node["y"] = [
            _scalar(getattr(exc, name, None))
            for name in ("filename", "lineno", "offset", "text", "end_lineno", "end_offset", "msg")
        ]
    elif isinstance(exc, OSError) and (exc.filename is not None or exc.filename2 is not None):
        node["i"] = [_scalar(exc.filename), _scalar(exc.filename2)]
    return node, []


def _frame_key(summary: traceback.FrameSummary) -> tuple[Any, ...]:
    line = summary.line
    return (
        str(summary.filename),
        _int_or_none(summary.lineno),
        str(summary.name),
        _int_or_none(getattr(summary, "end_lineno", None)),
        _int_or_none(getattr(summary, "colno", None)),
        _int_or_none(getattr(summary, "end_colno", None)),
        line if isinstance(line, str) else "",
    )


def _int_or_none(value: object) -> int | None:
    return value if type(value) is int and 0 <= value <= _LINE_LIMIT else None


def _scalar(value: object) -> str | int | None:
    if value is None or type(value) is str:
        return value
    if type(value) is int and -_LINE_LIMIT <= value <= _LINE_LIMIT:
        return value
    return _safe_string(value, "value")


def _builtin_base(cls: type) -> str:
    for base in cls.__mro__:
        if base in _BUILTIN_SET:
            return base.__name__
    return "BaseException"


def _count(te: Any) -> int:
    """How many exceptions hang from ``te`` (itself included), without recursion."""
    count, todo = 0, [te]
    while todo:
        node = todo.pop()
        count += 1
        todo += [n for n in (node.__cause__, node.__context__) if n is not None]
        todo += getattr(node, "exceptions", None) or []
    return count


def _shorten(data: dict[str, Any]) -> None:
    """Cut every long string of the exception data, with a visible mark."""
    for node in data["e"]:
        node["s"] = _cut(node["s"])
        if "o" in node:
            node["o"] = [_cut(note) for note in node["o"]]
        if "a" in node:
            node["a"] = [_cut(arg) if isinstance(arg, str) else arg for arg in node["a"]]
            if len(json.dumps(node["a"])) > _SHORT_STRING:
                node["a"] = [_cut(str(node["a"]))]
    for frame in data["f"]:
        frame[0], frame[2], frame[6] = _cut(frame[0]), _cut(frame[2]), _cut(frame[6])


def _cut(text: str) -> str:
    if len(text) <= _SHORT_STRING:
        return text
    return text[:_SHORT_STRING] + _CUT_MARK.format(len(text) - _SHORT_STRING, len(text))


def _safe_string(value: object, what: str, func: Any = str) -> str:
    """As the stdlib's traceback module renders what it cannot convert."""
    try:
        return str(func(value))
    except Exception:
        return f"<{what} {func.__name__}() failed>"


# -- the collector's side -------------------------------------------------------------


class StandIn:
    """Base of every stand-in exception class made in the collector.

    A stand-in has the producer's class name, module and qualified name and
    derives from the nearest built-in exception class of the original, but
    none of the original's code: its ``str()`` is the producer's text.
    ``isinstance(exc, StandIn)`` tells a stand-in from a real class.
    """

    __slots__ = ()

    def __str__(self) -> str:
        text = vars(self).get("_logfunnel_str")
        return text if isinstance(text, str) else ""

    def __reduce__(self) -> tuple[Any, ...]:
        cls: Any = type(self)
        key = (cls.__module__, cls.__qualname__, cls.__name__, cls._logfunnel_base)
        return (_unpickle_stand_in, (key, str(self), getattr(self, "args", ())))


def _unpickle_stand_in(key: tuple[Any, str, str, str], text: str, args: tuple[Any, ...]) -> Any:
    """A stand-in from its pickle (a sink that pickles a record's exception)."""
    cls = _stand_in_class(*key)
    exc: Any = cls.__new__(cls)
    exc.args = args
    exc._logfunnel_str = text
    return exc


_cache_lock = threading.Lock()
_stand_ins: dict[tuple[Any, ...], type[BaseException]] = {}
_stubs: dict[tuple[int, int, int], types.CodeType] = {}
_frames: dict[tuple[Any, ...], types.FrameType] = {}
_CACHE_SIZE: Final = 1024


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    with _cache_lock:
        if len(cache) >= _CACHE_SIZE:
            cache.pop(next(iter(cache)), None)
        cache[key] = value


def decode_exception(raw: bytes) -> tuple[Any, str | None]:
    """``(exc_info, exc_text)`` from the exception JSON of a record.

    Raises ``FrameError`` (from ``_codec``) for anything that is not exactly
    what ``encode_exception`` makes. Data that passes but cannot be rebuilt
    (a name the interpreter refuses as a class name, say) still gives a
    record: ``exc_info`` None and the exception as text in ``exc_text``.
    """
    if len(raw) > MAX_JSON:
        raise FrameError(f"record exception is {len(raw)} bytes (limit {MAX_JSON})")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise FrameError(f"record exception is not valid JSON: {error}") from None
    if data is None:
        return (None, None, None), None
    _check(data)
    try:
        exc = _rebuild(data)
    except Exception:  # validated data the interpreter still refuses: keep the text
        return None, _render(data)
    return (type(exc), exc, exc.__traceback__), None


def _check(data: Any) -> None:
    """Raise ``FrameError`` unless ``data`` is exception data as ``encode_exception`` makes it."""
    if type(data) is not dict or set(data) != {"e", "f"}:
        _bad("not an object with exactly 'e' and 'f'")
    nodes, frames = data["e"], data["f"]
    if type(nodes) is not list or not 1 <= len(nodes) <= MAX_EXCEPTIONS:
        _bad("no exceptions, or too many")
    if type(frames) is not list or len(frames) > MAX_FRAMES:
        _bad("too many frames")
    for frame in frames:
        if type(frame) is not list or len(frame) != 7:
            _bad("a frame is not a list of 7")
        filename, lineno, name, end_lineno, colno, end_colno, line = frame
        if not (type(filename) is str and type(name) is str and type(line) is str):
            _bad("a frame's file, function or line is not a string")
        if not all(_line_number(n) for n in (lineno, end_lineno, colno, end_colno)):
            _bad("a frame's position is not a line or column number")
    linked = [False] * len(nodes)
    entries = 0
    for index, node in enumerate(nodes):
        _check_node(index, node, len(nodes), len(frames), linked)
        entries += len(node["f"])
    if entries > MAX_ENTRIES:
        _bad(f"{entries} traceback entries (limit {MAX_ENTRIES})")
    if not all(linked[1:]):
        _bad("an exception is linked from nowhere")


def _check_node(index: int, node: Any, count: int, frames: int, linked: list[bool]) -> None:
    if type(node) is not dict or not _REQUIRED_KEYS <= node.keys() <= _NODE_KEYS:
        _bad(f"exception {index} has missing or unknown fields")
    if not all(type(node[k]) is str for k in "qnbs") or type(node.get("m")) not in _NAME_TYPES:
        _bad(f"exception {index} has a name or message that is not a string")
    if not _string_list(node.get("o", [])) or type(node.get("a", [])) is not list:
        _bad(f"exception {index} has bad notes or arguments")
    if type(node.get("p", False)) is not bool or type(node.get("k", "")) is not str:
        _bad(f"exception {index} has a bad flag or group message")
    entries = node["f"]
    if type(entries) is not list or not all(type(i) is int and 0 <= i < frames for i in entries):
        _bad(f"exception {index} refers to frames that are not there")
    links = [node[k] for k in "cx" if k in node]
    if "g" in node:
        if type(node["g"]) is not list or not node["g"] or "k" not in node:
            _bad(f"exception {index} is a group without members or message")
        links += node["g"]
    elif "k" in node:
        _bad(f"exception {index} has a group message but no group")
    for link in links:
        # Links point forward, each exception is linked once: a tree, rebuilt
        # without recursion and without cycles.
        if type(link) is not int or not index < link < count or linked[link]:
            _bad(f"exception {index} links to {link!r}: not a later, unshared exception")
        linked[link] = True
    hint = node.get("h", ["", None])
    if not (type(hint) is list and len(hint) == 2 and type(hint[0]) is str):
        _bad(f"exception {index} has a bad suggestion")
    if type(hint[1]) not in _NAME_TYPES:
        _bad(f"exception {index} has a bad suggestion")
    if "y" in node and "i" in node:
        _bad(f"exception {index} has both syntax and file details")
    for key, size in (("y", 7), ("i", 2)):
        details = node.get(key, [None] * size)
        if type(details) is not list or len(details) != size:
            _bad(f"exception {index} has bad syntax or file details")
        if not all(type(d) in _DETAIL_TYPES for d in details):
            _bad(f"exception {index} has bad syntax or file details")


_NAME_TYPES: Final = (str, type(None))
_DETAIL_TYPES: Final = (str, int, type(None))


def _bad(problem: str) -> NoReturn:
    raise FrameError(f"record exception is malformed: {problem}")


def _line_number(value: object) -> bool:
    return value is None or (type(value) is int and 0 <= value <= _LINE_LIMIT)


def _string_list(value: object) -> bool:
    return type(value) is list and all(type(item) is str for item in value)


def _rebuild(data: dict[str, Any]) -> BaseException:
    nodes: list[dict[str, Any]] = data["e"]
    frames: list[list[Any]] = data["f"]
    built: list[BaseException | None] = [None] * len(nodes)
    # Every link points to a later exception: build from the last one back.
    for index in range(len(nodes) - 1, -1, -1):
        node = nodes[index]
        members = [built[i] for i in node.get("g", ())]
        exc = _instance(node, [m for m in members if m is not None])
        cause = built[node["c"]] if "c" in node else None
        context = built[node["x"]] if "x" in node else None
        exc.__cause__ = cause
        exc.__context__ = context
        exc.__suppress_context__ = bool(node.get("p", False))
        if "o" in node:
            exc.__notes__ = list(node["o"])  # type: ignore[attr-defined]
        wrong, suggestion = node.get("h", (None, None))
        names: tuple[str, ...] = ()
        if wrong is not None and isinstance(exc, (NameError, AttributeError)):
            # The traceback module of 3.12+ suggests from exc.name and, for a
            # NameError, the last frame's names; for an AttributeError, dir(obj).
            exc.name = wrong
            if suggestion is not None and isinstance(exc, AttributeError):
                exc.obj = _Names(suggestion)
            elif suggestion is not None:
                names = (suggestion,)
        tb = None
        for position, entry in enumerate(reversed(node["f"])):
            frame = _frame(*frames[entry][:6], names=() if position else names)
            lineno = frames[entry][1] or 0
            tb = types.TracebackType(tb, frame, frame.f_lasti, lineno)
        exc.__traceback__ = tb
        built[index] = exc
    root = built[0]
    assert root is not None
    return root


def _instance(node: dict[str, Any], members: list[BaseException]) -> BaseException:
    """The exception of ``node``: of its real class when that is safe and prints the same."""
    module, qualname, name, text = node.get("m"), node["q"], node["n"], node["s"]
    args = tuple(node.get("a", ()))
    real = _real_class(module, qualname, name)
    if real is not None:
        try:
            exc: BaseException | None = _construct(real, node, args, members)
        except Exception:  # the arguments travelled as text and no longer fit
            exc = None
        # str() of a class made only of built-ins runs only the interpreter's C code.
        if exc is not None and type(exc) is real and str(exc) == text:
            return exc
    cls = _stand_in_class(module, qualname, name, _stand_in_base(node["b"], members))
    stand_in: Any = _construct(cls, node, args, members)
    stand_in._logfunnel_str = text
    return cast(BaseException, stand_in)


def _stand_in_base(name: str, members: list[BaseException]) -> str:
    """The built-in class a stand-in derives from: the original's nearest one, within reason.

    Never a ``BaseException`` that is not an ``Exception`` (a stand-in is no
    KeyboardInterrupt or SystemExit), except the group class a group needs.
    """
    base = _BUILTINS.get(name, Exception)
    if _GROUP is None:
        return base.__name__ if issubclass(base, Exception) else "BaseException"
    if members:
        if all(isinstance(m, Exception) for m in members):
            plain_group = _BUILTINS["ExceptionGroup"]
            return base.__name__ if issubclass(base, plain_group) else "ExceptionGroup"
        return "BaseExceptionGroup"
    if issubclass(base, _GROUP):  # a group whose members were all cut
        return "Exception"
    return base.__name__ if issubclass(base, Exception) else "BaseException"


def _construct(
    cls: type[BaseException],
    node: dict[str, Any],
    args: tuple[Any, ...],
    members: list[BaseException],
) -> BaseException:
    """An instance of ``cls`` (a built-in, a plain subclass or a stand-in): C code only."""
    if members and _GROUP is not None and issubclass(cls, _GROUP):
        return cls(node["k"], members)
    if "y" in node and issubclass(cls, SyntaxError):
        return cls(node["y"][6], tuple(node["y"][:6]))
    if "i" in node and issubclass(cls, OSError) and len(args) == 2:
        # OSError keeps the file names out of args: give them back as the third
        # and fifth arguments (the fourth is Windows' error code).
        return cls(args[0], args[1], node["i"][0], None, node["i"][1])
    try:
        return cls(*args)
    except Exception:  # a base that checks its arguments (UnicodeDecodeError, say)
        exc = cls.__new__(cls)
        exc.args = args
        return exc


def _real_class(module: str | None, qualname: str, name: str) -> type[BaseException] | None:
    """The original class, if the collector has it and making one runs only C code.

    Looked up in ``sys.modules`` and module and class dictionaries only, so
    nothing is imported and no ``__getattr__`` runs.
    """
    if module == "builtins":
        found: object = _BUILTINS.get(qualname)
    else:
        owner: object = sys.modules.get(module) if module is not None else None
        if type(owner) is not types.ModuleType:
            return None
        namespace: Any = vars(owner)
        found = None
        for part in qualname.split("."):
            found = namespace.get(part)
            if type(found) is not type:
                return None
            namespace = vars(found)
    if type(found) is not type or not issubclass(found, Exception):
        return None
    if found.__name__ != name or found.__qualname__ != qualname:
        return None
    for cls in found.__mro__:
        if cls is object or cls in _BUILTIN_SET:
            continue
        if type(cls) is not type or not vars(cls).keys() <= _PLAIN_CLASS_KEYS:
            return None
    return found


def _stand_in_class(
    module: str | None, qualname: str, name: str, base_name: str
) -> type[BaseException]:
    key = (module, qualname, name, base_name)
    cls = _stand_ins.get(key)
    if cls is not None:
        return cls
    namespace = {
        "__module__": module,
        "__qualname__": qualname,
        "__doc__": None,
        "_logfunnel_base": base_name,
    }
    bases = (StandIn, _BUILTINS.get(base_name, Exception))
    try:
        cls = type(name, bases, namespace)
    except (ValueError, UnicodeError):  # a name the interpreter refuses (NUL, surrogate)
        cls = type(_printable(name) or "Exception", bases, namespace)
    _remember(_stand_ins, key, cls)
    return cls


def _path_like(filename: str) -> bool:
    """Whether the file system calls accept ``filename`` (no NUL, encodable)."""
    try:
        os.fsencode(filename)
    except UnicodeError:
        return False
    return "\0" not in filename


def _printable(text: str) -> str:
    return text.replace("\0", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


class _Names:
    """What a rebuilt AttributeError's ``obj`` is: something whose dir() is the suggestion."""

    __slots__ = ("_names",)

    def __init__(self, *names: str) -> None:
        self._names = list(names)

    def __dir__(self) -> list[str]:
        return list(self._names)


def _frame(
    filename: str,
    lineno: int | None,
    name: str,
    end_lineno: int | None,
    colno: int | None,
    end_colno: int | None,
    *,
    names: tuple[str, ...] = (),
) -> types.FrameType:
    """A frame whose code has these file, function and positions; cached, made once.

    It is the frame of a generator stopped at its only ``yield``, whose every
    position is the producer's, so ``f_lasti`` and ``tb_lasti`` point to
    them. Nothing but that ``yield`` ever runs. The generator is then closed
    in ``_disposer``'s frame: a frame keeps the one that closed its generator
    as ``f_back`` (3.12), and that one has no caller chain to hold on to. No
    reference cycle keeps it either: CPython 3.13.0 frees the globals of a
    generator frame collected in a cycle while its frame object lives on.
    """
    key = (filename, lineno, name, end_lineno, colno, end_colno, names)
    cached = _frames.get(key)
    if cached is not None:
        return cached
    line = lineno or 0
    span = end_lineno - line if end_lineno is not None and end_lineno >= line else 0
    if colno is None or end_colno is None or (span == 0 and end_colno < colno):
        colno = end_colno = -1  # no columns: no caret line, as in the producer
    stub = _stub(span, colno, end_colno)
    if not _path_like(filename):
        # linecache would hand it to os.stat, whose ValueError or UnicodeError
        # no formatter expects; no producer's file has such a name anyway.
        filename = _printable(filename)
    try:
        code = _relocate(stub, line, filename, name)
    except (ValueError, UnicodeError):  # before 3.13: no NUL or lone surrogate in names
        code = _relocate(stub, line, _printable(filename), _printable(name))
    # No __name__ or __loader__ in the globals, so linecache reads only files;
    # ``names`` are the names a NameError's suggestion is made from.
    box = [types.FunctionType(code, dict.fromkeys(names))()]
    next(box[0])
    frame: types.FrameType = box[0].gi_frame
    with _cache_lock:
        _disposal.send(box)
    _remember(_frames, key, frame)
    return frame


def _dispose() -> Generator[None, list[Any], None]:
    """Empty each box sent in, so that what it held is finalized in this frame."""
    while True:
        box = yield
        box.clear()


_disposal = _dispose()
next(_disposal)


def _after_fork_in_child() -> None:
    """A fork child gets a fresh lock and disposer: the parent's may have been in use."""
    global _cache_lock, _disposal
    _cache_lock = threading.Lock()
    _disposal = _dispose()
    next(_disposal)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _relocate(stub: types.CodeType, lineno: int, filename: str, name: str) -> types.CodeType:
    if sys.version_info >= (3, 11):
        return stub.replace(
            co_firstlineno=lineno, co_filename=filename, co_name=name, co_qualname=name
        )
    return stub.replace(co_firstlineno=lineno, co_filename=filename, co_name=name)


def _stub(span: int, colno: int, end_colno: int) -> types.CodeType:
    """``def f(): yield`` at line 1 (relocated later), every node at these columns."""
    key = (span, colno, end_colno)
    code = _stubs.get(key)
    if code is not None:
        return code
    import ast

    def at(node: Any) -> Any:
        node.lineno, node.end_lineno = 1, 1 + span
        node.col_offset, node.end_col_offset = colno, end_colno
        return node

    extra: dict[str, Any] = {"type_params": []} if sys.version_info >= (3, 12) else {}
    function = at(
        ast.FunctionDef(
            name="f",
            args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]),
            body=[at(ast.Expr(value=at(ast.Yield(value=None))))],
            decorator_list=[],
            returns=None,
            **extra,
        )
    )
    module = compile(ast.Module(body=[function], type_ignores=[]), "<logfunnel>", "exec")
    code = next(c for c in module.co_consts if isinstance(c, types.CodeType))
    _remember(_stubs, key, code)
    return code


def _render(data: dict[str, Any]) -> str:
    """The exception as text from the data alone: the fallback when it cannot be rebuilt."""
    nodes, frames = data["e"], data["f"]
    chain, links = [0], []
    while True:
        node = nodes[chain[-1]]
        if "c" in node:
            links.append(_CAUSE)
            chain.append(node["c"])
        elif "x" in node and not node.get("p"):
            links.append(_CONTEXT)
            chain.append(node["x"])
        else:
            break
    parts: list[str] = []
    # The stdlib prints the first cause first and the root last.
    for position in range(len(chain) - 1, -1, -1):
        node = nodes[chain[position]]
        if node["f"]:
            parts.append("Traceback (most recent call last):\n")
        for entry in node["f"]:
            filename, lineno, name, *_, line = frames[entry]
            parts.append(f'  File "{filename}", line {lineno}, in {name}\n')
            if line.strip():
                parts.append(f"    {line.strip()}\n")
        module = node.get("m")
        prefix = "" if module in ("__main__", "builtins") else f"{module or '<unknown>'}."
        text = node["s"]
        parts.append(f"{prefix}{node['q']}: {text}\n" if text else f"{prefix}{node['q']}\n")
        parts += [note + "\n" for note in node.get("o", ())]
        if position:
            parts.append(links[position - 1])
    return "".join(parts).rstrip("\n")


_CAUSE: Final = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT: Final = "\nDuring handling of the above exception, another exception occurred:\n\n"
