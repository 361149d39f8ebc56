"""``JSONFormatter``: one JSON object a line, for log shippers that tail files.

A plain ``logging.Formatter`` in every respect: set it on any handler, in
one process or from ``dictConfig``. What it writes is defined here alone, so
a file written by one process and the same file written through a funnel
hold the same objects: on a plain stdlib file or stream sink the collector
asks the producers to format with an identical ``JSONFormatter`` (see
``_sinks._writer.text_spec``), and line mode stays on.

Each line is valid JSON whatever the record holds, as a strict parser reads
it: the message and every string go through the C string encoder of
``json`` (quotes, backslashes and control characters escaped); a lone
surrogate, which a strict parser refuses even escaped, becomes U+FFFD; an
``extra`` value JSON cannot hold exactly (a tuple, an object, a recursive
list, a NaN, an int too long to print) becomes its ``str()``, and one whose
``__str__`` raises becomes its repr or an account of the failure. The
rule for extras is the wire's (``_protocol._codec.faithful``), so a record
rebuilt in a collector formats as the original did.

``json.dumps`` builds an encoder on every call and walks a dict it would
have to build first, which costs about twice a text line. The fixed fields
are the same keys in the same order on every line, so their key fragments
are made once, the process and thread fields are bound into the template
while they stay the same, and each record costs one ``%`` over a few values,
escaped by the C encoder where they need it (see ``JSONFormatter.format``).
That keeps formatting in the producers near the cost of a text line.
"""

from __future__ import annotations

import logging
import operator
import time
from collections.abc import Callable, Mapping, Sequence

from ._protocol._codec import STANDARD_ATTRS, faithful, record_host, safe_message, safe_str

# typing is for the type checker only: every worker may import this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

    from ._protocol._loggers import UnderRoutes

__all__ = ["DEFAULT_FIELDS", "FIELDS", "JSONFormatter"]

#: The fields a line holds unless told otherwise, in this order. ``exception``
#: and ``stack`` appear only on records that have them.
DEFAULT_FIELDS: Final = (
    "time",
    "level",
    "logger",
    "message",
    "host",
    "process",
    "processName",
    "thread",
    "threadName",
    "exception",
    "stack",
)

#: Fields made from the record rather than read off it: what each one is.
_DERIVED: Final = {
    "time": "the record's creation time in UTC, ISO 8601 to the microsecond",
    "level": "the level's name (levelname)",
    "logger": "the logger's name (name)",
    "message": "the merged message (msg % args)",
    "host": "the name of the host that made the record",
    "exception": "the exception's traceback text, when there is one",
    "stack": "the stack text (stack_info=True), when there is one",
}
#: Record attributes a line can hold as themselves, beside the derived fields.
_ATTRIBUTES: Final = (
    "levelno",
    "pathname",
    "filename",
    "module",
    "lineno",
    "funcName",
    "created",
    "msecs",
    "relativeCreated",
    "process",
    "processName",
    "thread",
    "threadName",
    "taskName",
)
#: The record attribute of a field whose name is not the attribute's.
_ATTRIBUTE_OF: Final = {"level": "levelname", "logger": "name"}
#: Every field name ``fields=`` accepts.
FIELDS: Final = frozenset(_DERIVED) | frozenset(_ATTRIBUTES)

# What a JSON key may be prefixed with when an extra has the name of a field's key.
_CLASH_PREFIX: Final = "extra_"

_encode_string: Callable[[str], str] | None = None
_encode_value: Callable[[object], str] | None = None
_host: str | None = None


def _encoders() -> tuple[Callable[[str], str], Callable[[object], str]]:
    """``json``'s C string encoder and a C encoder for checked values, made once.

    Imported on first use: a worker imports ``json`` only when one of its
    sinks writes JSON. ``JSONEncoder(...).encode`` is the reference; the C
    encoder, which it would build on every call, is built once here when it
    exists and agrees with it.
    """
    global _encode_string, _encode_value
    if _encode_string is None or _encode_value is None:
        import json.encoder

        encode_string = getattr(json.encoder, "c_encode_basestring", None)
        if encode_string is None:
            encode_string = json.encoder.py_encode_basestring
        plain = json.JSONEncoder(
            ensure_ascii=False, allow_nan=False, check_circular=False, separators=(",", ":")
        ).encode
        encode_value: Callable[[object], str] = plain
        make = getattr(json.encoder, "c_make_encoder", None)
        if make is not None:
            try:
                encoder = make(
                    None, _no_default, encode_string, None, ":", ",", False, False, False
                )

                def fast(value: object) -> str:
                    return "".join(encoder(value, 0))

                probe = ['é\n"', 1, -2.5, None, True, False, {"k": [{}, []]}]
                if fast(probe) == plain(probe):
                    encode_value = fast
            except Exception:
                pass
        _encode_string, _encode_value = encode_string, encode_value
    return _encode_string, _encode_value


def _no_default(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON")


def _hostname() -> str:
    global _host
    if _host is None:
        import socket

        _host = socket.gethostname()
    return _host


class JSONFormatter(logging.Formatter):
    """One JSON object a line: the record's ``fields`` and every ``extra`` value.

    ``fields`` names the fields and their order (see ``FIELDS``), as a
    sequence of names, or as a mapping from name to the key written for it
    (``{"time": "@timestamp", "message": "msg"}``). ``extras=False`` leaves
    out the attributes that ``extra=`` (or a filter) put on the record; with
    the default they follow the fields, in the record's order, each as
    itself where JSON holds it exactly and as its ``str()`` where it cannot.
    An extra named like one of the fields' keys is written as
    ``extra_<name>``, so that it never stands for the field.

    From ``dictConfig``: ``{"()": "logfunnel.JSONFormatter", "fields":
    [...]}``. Its options are plain data (``options``), which is how a
    collector hands it to its producers.
    """

    #: Set in a producer in line mode beside routes (see ``_producer._handler``): the
    #: loggers whose records travel as frames, for their routes' handlers.
    routes: UnderRoutes | None = None

    def __init__(
        self,
        fields: Sequence[str] | Mapping[str, str] | None = None,
        *,
        extras: bool = True,
    ) -> None:
        super().__init__()
        if fields is None:
            fields = DEFAULT_FIELDS
        if isinstance(fields, str):
            raise TypeError("fields must be a sequence of field names or a mapping, not a str")
        keys = dict(fields) if isinstance(fields, Mapping) else {name: name for name in fields}
        unknown = sorted(set(keys) - FIELDS)
        if unknown:
            raise ValueError(
                f"unknown JSON field(s) {', '.join(map(repr, unknown))}; "
                f"the fields are {', '.join(sorted(FIELDS))}"
            )
        for key in keys.values():
            if not isinstance(key, str):
                raise TypeError(f"a JSON key must be a str, not {key!r}")
        if len(set(keys.values())) != len(keys):
            raise ValueError("two fields have the same JSON key")
        self.fields: dict[str, str] = keys
        self.extras = bool(extras)
        encode_string, self._encode_value = _encoders()
        self._encode_string = encode_string
        self._keys = frozenset(keys.values())
        fixed = [name for name in keys if name not in ("exception", "stack")]
        self._exception_key = encode_string(keys["exception"]) if "exception" in keys else ""
        self._stack_key = encode_string(keys["stack"]) if "stack" in keys else ""
        self._host = encode_string(_hostname()) if "host" in keys else ""
        # The host field as this host writes it: what a record from another host changes.
        self._host_key = f"{encode_string(keys['host'])}:" if "host" in keys else ""
        # The time's cache: (a UTC second, its text); none at first (see _time_of).
        self._clock: tuple[float, str] = (_NO_SECOND, "")
        # The level and logger names met, encoded (see _name).
        self._names: dict[str, str] = {}
        # The fixed fields, field by field: a %-template over their values (see _getter).
        self._template = "{" + ",".join(
            encode_string(keys[name]).replace("%", "%%") + ":%s" for name in fixed
        )
        self._getters = [self._getter(name) for name in fixed]
        # The fast way (see format): the fields as pieces, each a literal (a key,
        # the host), a steady field (bound in while it stays the same) or a value
        # made per record, which _bind turns into a %-template.
        self._pieces: list[tuple[str, str]] = []
        self._others: list[tuple[str, Callable[[object], str]]] = []
        order: list[int] = []  # where each value the template takes is in format's tuple
        for index, name in enumerate(fixed):
            self._pieces.append(("", ("{" if not index else ",") + encode_string(keys[name]) + ":"))
            attribute = _ATTRIBUTE_OF.get(name, name)
            if name in _STEADY:
                self._pieces.append(("steady", attribute))
            elif name == "host":
                self._pieces.append(("", self._host))
            else:
                self._pieces.append(("value", name))
                if name in _PER_RECORD:
                    order += _PER_RECORD[name]
                else:
                    convert = self._string if attribute in _STRINGS else self._value
                    order.append(len(_MADE) + len(self._others))
                    self._others.append((attribute, convert))
        if not fixed:
            self._pieces.append(("", "{"))
        made = len(_MADE) + len(self._others)
        self._order = None if order == list(range(made)) else _picker(order)
        self._more = bool(self._others) or self._order is not None
        # (process and thread fields, template, the literal rest, the rest and "}"):
        # see _bind.
        self._bound: tuple[tuple[object, ...] | None, str, str, str] = (None, "", "", "")

    @property
    def options(self) -> dict[str, Any]:
        """The keyword arguments that make an equal formatter, as plain data."""
        return {"fields": [[name, key] for name, key in self.fields.items()], "extras": self.extras}

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> JSONFormatter:
        """The formatter ``options`` describes (a collector's handshake, a ``SinkConfig``)."""
        fields = options.get("fields")
        if fields is not None and not isinstance(fields, Mapping):
            # JSON has no tuples: names, or [name, key] pairs as ``options`` gives them.
            try:
                fields = dict((f, f) if isinstance(f, str) else tuple(f) for f in fields)
            except (TypeError, ValueError):
                raise TypeError(
                    f"fields must be names or [name, key] pairs, not {fields!r}"
                ) from None
        return cls(fields, extras=bool(options.get("extras", True)))

    def __repr__(self) -> str:
        return f"<JSONFormatter fields={list(self.fields)} extras={self.extras}>"

    # -- formatting ----------------------------------------------------------

    def format(self, record: logging.LogRecord) -> str:
        """The record's line: the fixed fields by a %-template, then what only some have.

        The template (see ``_bind``) holds the keys, the host and the process
        and thread fields of the last record's thread, so a record fills in its
        time, level, logger and message and any other field named, in one
        ``%``; the literal fields after the last of those are appended as
        they are. What repeats is kept: the text of the second (``_time_of``)
        and the level and logger names, encoded (``_name``). The message goes
        through the C string encoder of ``json`` only when it needs escaping.
        A record whose attributes are not what ``LogRecord`` makes (one
        missing, a time that is not a number) raises here and goes field by
        field, which gives the same line for every record both can take.
        """
        d = record.__dict__
        try:
            message = record.getMessage()
        except Exception:
            message = safe_message(record)
        # A record with an extra has more attributes than LogRecord gives it: only
        # such a record (or one a formatter added "message" to) pays for the check.
        tail = None
        if record.exc_info or record.exc_text or record.stack_info or len(d) > _PLAIN_SIZE:
            tail = self._tail(record, d)
        try:
            # Read once each: a formatter on several handlers may be in several threads.
            bound = self._bound
            steady = (d["process"], d["processName"], d["thread"], d["threadName"])
            if steady != bound[0]:
                bound = self._bind(steady)
            clock = self._clock
            since = d["created"] - clock[0]
            micros = round(since * 1e6)
            if since < 0.0 or micros >= 1_000_000:
                clock, micros = self._time_of(d["created"])
            level, logger = d["levelname"], d["name"]
            names = self._names
            try:
                level = names[level] if level.__class__ is str else self._value(level)
            except KeyError:
                level = self._name(level)
            try:
                logger = names[logger] if logger.__class__ is str else self._value(logger)
            except KeyError:
                logger = self._name(logger)
            values: tuple[object, ...] = (
                clock[1],
                micros,
                level,
                logger,
                # Most messages need no escaping: a table lookup a byte finds that
                # for 60% of what the encoder's two passes cost on 100 characters,
                # and 40% on long messages (callgrind).
                message
                if message.isascii() and 0 not in message.encode().translate(_SPECIAL)
                else self._encode_string(message)[1:-1],
            )
            if self._more:
                values = self._complete(values, d)
            line = bound[1] % values + (bound[3] if tail is None else bound[2] + tail)
        except Exception:
            line = self._template % tuple([get(d, message) for get in self._getters])
            line += "}" if tail is None else tail
        if self._host and record.__class__ is not _LogRecord:
            host = record_host(record)
            if host is not None and host != _hostname():
                # Formatted in a collector for another host's producer: its host, as
                # that producer would have written. The field is the first place the
                # fragment can be: inside an encoded string every quote is escaped.
                line = line.replace(
                    self._host_key + self._host, self._host_key + self._encode_string(host), 1
                )
        if not line.isascii():
            line = _safe_text(line)
        return line

    def _complete(self, values: tuple[object, ...], d: dict[str, Any]) -> tuple[object, ...]:
        """``values`` with the other fields' values, in the template's order."""
        if self._others:
            values += tuple([convert(d[attribute]) for attribute, convert in self._others])
        if self._order is not None:
            values = self._order(values)
        return values

    def _tail(self, record: logging.LogRecord, d: dict[str, Any]) -> str:
        """What follows the fixed fields: the exception, the stack, the extras, ``}``."""
        tail = ""
        if record.exc_info and not record.exc_text:
            # Cached on the record, as the stdlib's format does.
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text and self._exception_key:
            tail += f",{self._exception_key}:{self._string(record.exc_text)}"
        if record.stack_info and self._stack_key:
            stack = self.formatStack(record.stack_info)
            tail += f",{self._stack_key}:{self._string(stack)}"
        if self.extras and len(d) > _PLAIN_SIZE and not d.keys() <= STANDARD_ATTRS:
            tail += self._extras(d)
        return tail + "}"

    def _bind(self, steady: tuple[object, ...]) -> tuple[tuple[object, ...], str, str, str]:
        """Make the template for the process and thread fields of this record's thread.

        The template ends at the last value made per record; the literal
        fields after it are kept apart, appended without a ``%`` to scan.
        """
        values = dict(zip(_STEADY_ORDER, steady, strict=True))
        texts = []
        last = 0
        for kind, what in self._pieces:
            if kind == "value":
                texts.append(_SLOTS.get(what, "%s"))
                last = len(texts)
            elif kind == "steady":
                value = values[what]
                texts.append(self._string(value) if what in _STRINGS else self._value(value))
            else:
                texts.append(what)
        head = "".join(
            text if kind == "value" else text.replace("%", "%%")
            for (kind, _), text in zip(self._pieces[:last], texts[:last], strict=True)
        )
        rest = "".join(texts[last:])
        self._bound = (steady, head, rest, rest + "}")
        return self._bound

    def _extras(self, d: dict[str, Any]) -> str:
        """``,"key":value`` for every extra attribute, in the record's order."""
        keys, encode_string = self._keys, self._encode_string
        out = []
        for key, value in d.items():
            if key in STANDARD_ATTRS or type(key) is not str:
                continue
            name = _CLASH_PREFIX + key if key in keys else key
            out.append(f",{encode_string(name)}:{self._value(value)}")
        return "".join(out)

    def _value(self, value: object) -> str:
        """``value`` as JSON where it is exactly that, else its ``str()`` as a JSON string."""
        kind = type(value)
        if kind is str:
            return self._encode_string(value)  # type: ignore[arg-type]
        if kind is bool or value is None:
            return "true" if value is True else "false" if value is False else "null"
        if (kind is int or kind is float) and faithful(value):
            text = repr(value)
            if kind is int or text not in ("nan", "inf", "-inf"):
                return text
        elif kind in (list, dict) and faithful(value):
            try:
                return self._encode_value(value)
            except ValueError:  # a NaN or an infinity inside: not JSON
                pass
        return self._encode_string(safe_str(value))

    def _string(self, value: object) -> str:
        """A text attribute: a str as itself, anything a filter put there by ``_value``."""
        if isinstance(value, str) and type(value) is str:  # exact: a subclass may print otherwise
            return self._encode_string(value)
        return self._value(value)

    def _time(self, d: dict[str, Any], message: str) -> str:
        created = d.get("created")
        if type(created) is float or type(created) is int:
            try:
                clock, micros = self._time_of(created)
                return f'{clock[1]}{micros:06d}Z"'
            except (ValueError, OverflowError, OSError):  # NaN, or beyond the calendar
                pass
        return self._value(created)

    def _time_of(self, created: float) -> tuple[tuple[float, str], int]:
        """The text of the second ``created`` is in, and its microseconds, as
        ``datetime.fromtimestamp`` rounds them: the fraction, half to even.

        The second is kept: a later record in it (from 1970 on) takes its
        microseconds with one subtraction, the same fraction exactly, and one
        ``strftime`` serves the whole second.
        """
        whole = float(int(created))  # created - whole is the exact fraction, as modf's
        micros = round((created - whole) * 1e6)
        if micros >= 1_000_000:
            whole, micros = whole + 1.0, micros - 1_000_000
        elif micros < 0:
            whole, micros = whole - 1.0, micros + 1_000_000
        clock = (whole, time.strftime('"%Y-%m-%dT%H:%M:%S.', time.gmtime(whole)))
        if whole >= 0.0:
            self._clock = clock
        return clock, micros

    def _name(self, name: str) -> str:
        """A level or logger name, encoded, and kept for its next record when a str:
        a program has few (a bound keeps a program that makes loggers without end)."""
        text = self._string(name)
        if name.__class__ is str:
            if len(self._names) >= _NAMES_KEPT:
                self._names.clear()
            self._names[name] = text
        return text

    def _getter(self, name: str) -> Callable[[dict[str, Any], str], str]:
        """How the JSON value of field ``name`` is made from a record's dict and message."""
        if name == "time":
            return self._time
        if name == "message":
            encode_string = self._encode_string
            return lambda d, message: encode_string(message)
        if name == "host":
            return lambda d, message: self._host
        attribute = _ATTRIBUTE_OF.get(name, name)
        convert = self._string if attribute in _STRINGS else self._value
        return lambda d, message: convert(d.get(attribute))


def _picker(order: Sequence[int]) -> Callable[[tuple[object, ...]], tuple[object, ...]]:
    """What takes the values at ``order`` from a tuple, as a tuple (one C call)."""
    if len(order) > 1:
        return operator.itemgetter(*order)
    return lambda values: tuple([values[index] for index in order])


def _safe_text(line: str) -> str:
    """``line`` with each lone surrogate made U+FFFD (strict JSON parsers refuse them,
    escaped or not) and the characters that ``str.splitlines`` and some other readers
    take for line ends (U+0085, U+2028, U+2029) escaped: one record, one line."""
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        import re

        line = re.sub("[\ud800-\udfff]", "\ufffd", line)
    if "\x85" in line or "\u2028" in line or "\u2029" in line:
        line = line.replace("\x85", "\\u0085").replace("\u2028", "\\u2028")
        line = line.replace("\u2029", "\\u2029")
    return line


_LogRecord: Final = logging.LogRecord
#: A second no record is in (beyond the calendar, yet a record's time less it is
#: a number): the time's cache when it holds none.
_NO_SECOND: Final = 2.0**62
#: How many level and logger names a formatter keeps encoded.
_NAMES_KEPT: Final = 1024
#: How many attributes a ``LogRecord`` has when it is made (a collector's too).
_PLAIN_SIZE: Final = len(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)

#: Record attributes that stay the same from one record to the next of a
#: thread: they are bound into the template while they do (see ``_bind``).
_STEADY_ORDER: Final = ("process", "processName", "thread", "threadName")
_STEADY: Final = frozenset(_STEADY_ORDER)
#: The values ``JSONFormatter.format`` makes for each record, in this order, and
#: where each field's are among them: the time is the cached text of its second
#: and the microseconds.
_MADE: Final = ("second", "microseconds", "level", "logger", "message")
_PER_RECORD: Final = {"time": (0, 1), "level": (2,), "logger": (3,), "message": (4,)}
#: How the template takes the values ``JSONFormatter.format`` makes (the message
#: comes escaped, without its quotes).
_SLOTS: Final = {"time": '%s%06dZ"', "message": '"%s"'}
#: Bytes a JSON string cannot hold as they are (ASCII controls, quote and
#: backslash) as 0, the others as 1: ``bytes.translate`` marks them.
_SPECIAL: Final = bytes(0 if byte < 0x20 or byte in b'"\\' else 1 for byte in range(256))
#: Attributes that are str on every ordinary record.
_STRINGS: Final = frozenset(
    {"levelname", "name", "processName", "threadName", "pathname", "filename", "module", "funcName"}
)
