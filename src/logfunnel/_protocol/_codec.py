"""The wire format: log records as plain data in length-prefixed frames.

Nothing here ever unpickles or evaluates what it reads. A producer turns a
``LogRecord`` into bytes once, so that the collector only has to validate
and copy; a frame the decoder does not fully understand raises ``FrameError``
and the caller closes that one connection.

Frame layout (all integers little-endian)::

    u32 length | u8 kind | body (length - 1 bytes)

A record body is a fixed header followed by the UTF-8 bytes of its string
fields, whose lengths are in the header, so decoding is one ``unpack_from``
and a few slices. Three fields are JSON, each with its own size limit:

* the call, ``[msg, args]``: the template and the arguments, each argument
  as itself where JSON holds it faithfully (see ``faithful``), else as its
  ``str()``. Left empty, the common case, when ``msg`` is a ``str`` and there
  are no arguments: the template is then the message.
* the exception (see ``_exceptions``): ``null`` for ``(None, None, None)``.
* ``extra``: every non-standard attribute, by the same rule as arguments,
  so that ``%(x)s`` prints ``str(x)`` as in one process.

What a collector-side record holds
----------------------------------

A :class:`ReceivedRecord` (a ``LogRecord`` subclass). ``getMessage()``
returns the producer's merged message exactly, whatever the arguments'
types, while ``msg`` is the template and ``args`` the JSON-safe arguments,
for sinks that read them. A filter that changes ``msg`` or ``args`` changes
the message as in one process. ``exc_info`` is rebuilt (see
``_exceptions``) and ``exc_text`` is None until a formatter caches its own
text there, as in one process. ``copy.copy`` keeps all of it; pickling
gives a plain ``LogRecord`` whose ``msg`` is the merged message and
``args`` None (what ``SocketHandler`` sends), so it unpickles where
logfunnel is not installed. ``logging.makeLogRecord(record.__dict__)``
makes a plain record that merges template and arguments again: the same
text whenever every argument was faithful or is printed with ``%s``.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Mapping

# typing is for the type checker only: every worker imports this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final


__all__ = [
    "HEADER",
    "KIND_ACK",
    "KIND_AUTH",
    "KIND_BYE",
    "KIND_CONFIG",
    "KIND_HELLO",
    "KIND_RECORD",
    "KIND_TEXT",
    "LINE_LIMIT",
    "MAX_CALL",
    "MAX_EXTRA",
    "MAX_FRAME",
    "MERGED",
    "ONE_TEXT",
    "PROTOCOL_VERSION",
    "STANDARD_ATTRS",
    "FrameError",
    "ReceivedRecord",
    "decode_json",
    "decode_record",
    "decode_text",
    "encode_json",
    "encode_record",
    "encode_text",
    "faithful",
    "json_value",
    "make_record",
    "record_body",
    "record_host",
    "safe_message",
    "safe_repr",
    "safe_str",
]

PROTOCOL_VERSION: Final = 3

#: The longest line a producer may send bare in line mode, newline included;
#: a connection with more than this and no newline is malformed.
LINE_LIMIT: Final = 1 << 18

#: Largest frame either side accepts. A record bigger than this is truncated
#: by the producer (with a visible marker) instead of being refused.
MAX_FRAME: Final = 64 * 1024 * 1024

KIND_HELLO: Final = 1
KIND_CONFIG: Final = 2
KIND_RECORD: Final = 3
KIND_AUTH: Final = 4
KIND_TEXT: Final = 5
#: Collector to producer, over TCP: how far the producer's records are written.
KIND_ACK: Final = 6
#: Collector to producer: it is stopping for good; send nothing more.
KIND_BYE: Final = 7

HEADER: Final = struct.Struct("<IB")

# created, msecs, relativeCreated, levelno, lineno, process, thread, seq,
# then the byte length of each string field in _STRING_FIELDS order.
_STRING_FIELDS: Final = (
    "name",
    "msg",
    "levelname",
    "pathname",
    "filename",
    "module",
    "funcName",
    "processName",
    "threadName",
    "taskName",
    "exc_text",
    "stack_info",
)
# After them, three JSON fields: the call, the exception, the extras.
_CALL_INDEX: Final = len(_STRING_FIELDS)
_EXC_INDEX: Final = _CALL_INDEX + 1
_EXTRA_INDEX: Final = _CALL_INDEX + 2
_RECORD: Final = struct.Struct(f"<dddiiqQQ{len(_STRING_FIELDS) + 3}I")
_FRAME_PREFIX: Final = struct.Struct("<IB")
# levelno, seq, number of texts, length of the structured record (0: none).
_TEXT_HEAD: Final = struct.Struct("<iQHI")
#: A whole text frame header with exactly one text: prefix, head, its length.
ONE_TEXT: Final = struct.Struct("<IBiQHII")
_ONE_TEXT: Final = ONE_TEXT

_HAS_TASK_NAME: Final = "taskName" in logging.LogRecord("", 0, "", 0, "", (), None).__dict__

#: Attributes that every LogRecord has; anything else on a record came from
#: ``extra=`` (or a filter) and travels in the JSON ``extra`` field.
STANDARD_ATTRS: Final = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "exc_info",
    "exc_text",
    "stack_info",
}

#: Largest ``extra`` JSON a record may carry. JSON decodes into objects up to
#: some 25 times its size (``[[],[],...]``), so this, not MAX_FRAME, bounds
#: what one record can make the collector allocate. Larger extras are cut
#: down by the producer; the decoder refuses them.
MAX_EXTRA: Final = 1024 * 1024
#: Largest call (``[msg, args]``) JSON a record may carry, for the same reason.
MAX_CALL: Final = 1024 * 1024

#: The key under which ``decode_record`` gives the producer's merged message;
#: ``make_record`` moves it out of the attributes. No attribute can have it.
MERGED: Final = "\0merged"

# A structured record takes at most this much of a frame, so that a text
# frame has room for the producer-formatted texts beside it.
_BODY_LIMIT: Final = MAX_FRAME // 2
_TRUNCATION_MARK: Final = " ...[logfunnel: truncated {} of {} bytes]"
_MARK_ROOM: Final = 64

_ENCODING_ERRORS: Final = "backslashreplace"

_exc_formatter = logging.Formatter()


# Values are checked acyclic and JSON-safe first (see ``json_value``).
def _no_default(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON: json_value should have made it str")


def _fast_encoder() -> Callable[[object], str]:
    """A JSON encoder for checked values, the C encoder made once instead of once per call.

    ``JSONEncoder.encode`` builds a C encoder on every call, which costs more
    than encoding a record's few arguments. The C encoder's constructor is not
    public, so it is checked against ``JSONEncoder.encode`` here, and not used
    if it differs or is missing. Made on first use: a worker whose records
    carry no arguments or extras never imports ``json``.
    """
    import json

    # Values are checked acyclic and JSON-safe first (see ``json_value``).
    plain = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode
    make = getattr(json.encoder, "c_make_encoder", None)
    basestring = getattr(json.encoder, "c_encode_basestring", None)
    if make is None or basestring is None:
        return plain
    try:
        encoder = make(None, _no_default, basestring, None, ":", ",", False, False, True)

        def encode(value: object) -> str:
            return "".join(encoder(value, 0))

        probe = ['é\ud800\n"', (1, -2.5, None, True, False, float("nan")), {"k": [{}, []]}]
        if encode(probe) == plain(probe):
            return encode
    except Exception:
        pass
    return plain


_encoder: Callable[[object], str] | None = None


def _encode_json(value: object) -> str:
    global _encoder
    if _encoder is None:
        _encoder = _fast_encoder()
    return _encoder(value)


class FrameError(ValueError):
    """A frame that is malformed, oversized or not of this protocol."""


def safe_repr(value: object) -> str:
    """``repr`` that cannot raise, so a hostile object cannot stop a record."""
    try:
        return repr(value)
    except Exception as exc:  # a broken __repr__ must not lose the record
        return f"<unrepresentable {type(value).__qualname__}: {type(exc).__name__}>"


def safe_message(record: logging.LogRecord) -> str:
    """The merged message, or a readable account of why it could not be merged.

    ``getMessage`` runs user code (``__str__`` of msg and args, ``%``
    formatting), which may raise; the stdlib would print a traceback and drop
    the record, we keep the raw parts instead.
    """
    try:
        return record.getMessage()
    except Exception as exc:
        args = record.args
        shown = (
            "(" + ", ".join(map(safe_repr, args)) + ("," if len(args) == 1 else "") + ")"
            if isinstance(args, tuple)
            else safe_repr(args)
        )
        return (
            f"{safe_repr(record.msg)} % {shown}"
            f" [logfunnel: message could not be formatted: {type(exc).__name__}: "
            f"{_safe_str(exc)}]"
        )


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return safe_repr(value)


#: Types whose values JSON gives back exactly, with the same ``str()``.
_EXACT: Final = frozenset({str, int, float, bool, type(None)})
_MAX_DEPTH: Final = 32
# Beyond this many bits an int has more than ~4,300 digits: str() refuses it.
_MAX_INT_BITS: Final = 14_000


def faithful(value: object, depth: int = 0) -> bool:
    """Whether JSON brings ``value`` back equal, of the same type, printing the same.

    Only exact ``str``, ``int``, ``float``, ``bool``, ``None`` and lists and
    str-keyed dicts of those: a tuple would come back a list, a subclass
    (an IntEnum, a str Enum) as its base type, each printing differently.
    """
    kind = type(value)
    if kind in _EXACT:
        return kind is not int or value.bit_length() < _MAX_INT_BITS  # type: ignore[attr-defined]
    if depth >= _MAX_DEPTH:
        return False
    if kind is list:
        return all(faithful(item, depth + 1) for item in value)  # type: ignore[attr-defined]
    if kind is dict:
        return all(
            type(key) is str and faithful(item, depth + 1)
            for key, item in value.items()  # type: ignore[attr-defined]
        )
    return False


def json_value(value: object) -> Any:
    """``value`` itself where JSON holds it faithfully, else its ``str()``: never an error."""
    if faithful(value):
        return value
    return safe_str(value)


def safe_str(value: object) -> str:
    """``str(value)`` as ``%s`` prints it; if that raises, its repr or a readable account."""
    try:
        text = str(value)
    except Exception as exc:
        try:
            return repr(value)
        except Exception:
            return f"<{type(value).__qualname__} object: str() failed: {type(exc).__name__}>"
    return str.__str__(text)  # an exact str, even from a subclass's __str__


def _call_json(msg: object, args: object) -> bytes:
    """``[msg, args]`` as JSON: the template and each argument, faithful or as ``str()``."""
    if type(msg) is str and type(args) is tuple and set(map(type, args)) <= _EXACT:
        # The common call: a str template and scalar arguments, all faithful
        # (an int too long for str() fails here, and takes the way below).
        try:
            data = _encode_json((msg, args)).encode("utf-8", _ENCODING_ERRORS)
        except ValueError:
            pass
        else:
            if len(data) <= MAX_CALL:
                return data
    template = msg if faithful(msg) else safe_str(msg)
    wire: Any
    if type(args) is tuple:
        wire = [json_value(arg) for arg in args]
    elif isinstance(args, Mapping):
        try:
            wire = {
                key if type(key) is str else safe_str(key): json_value(value)
                for key, value in args.items()
            }
        except Exception:  # a hostile mapping: the merged message still travels
            wire = None
    else:
        wire = json_value(args)
    data = _encode_json([template, wire]).encode("utf-8", _ENCODING_ERRORS)
    if len(data) > MAX_CALL:
        data = _smaller_call(template, wire)
    return data


def _smaller_call(template: Any, wire: Any) -> bytes:
    """A call over MAX_CALL: long strings cut (visibly), else the template alone."""
    count = len(wire) if isinstance(wire, (list, dict)) else 1
    share = max(64, MAX_CALL // (4 * (count + 1)))

    def cut(value: Any) -> Any:
        if isinstance(value, str) and len(value) > share:
            return _truncate(value.encode("utf-8", _ENCODING_ERRORS), share).decode("utf-8")
        return value

    if isinstance(wire, list):
        wire = [cut(item) for item in wire]
    elif isinstance(wire, dict):
        wire = {cut(key): cut(item) for key, item in wire.items()}
    else:
        wire = cut(wire)
    data = _encode_json([cut(template), wire]).encode("utf-8", _ENCODING_ERRORS)
    if len(data) > MAX_CALL:
        data = _encode_json([cut(safe_str(template)), None]).encode("utf-8", _ENCODING_ERRORS)
    return data


def _extra_json(record_dict: dict[str, Any]) -> bytes:
    if not record_dict.keys() - STANDARD_ATTRS:
        return b""
    # In the record's own order, which JSON sinks keep.
    extra = {
        key: value
        for key, value in record_dict.items()
        if key not in STANDARD_ATTRS and isinstance(key, str)
    }
    if not set(map(type, extra.values())) <= _EXACT:
        extra = {key: json_value(value) for key, value in extra.items()}
    try:
        data = _encode_json(extra).encode("utf-8", _ENCODING_ERRORS)
    except ValueError:  # an int too long for str()
        extra = {key: json_value(value) for key, value in extra.items()}
        data = _encode_json(extra).encode("utf-8", _ENCODING_ERRORS)
    if len(data) > MAX_EXTRA:
        data = _smaller_extra(extra, len(data))
    return data


def _smaller_extra(extra: dict[str, Any], size: int) -> bytes:
    """Extras over MAX_EXTRA: each value becomes a truncated str, so the record still goes."""
    import json

    share = max(64, MAX_EXTRA // (2 * len(extra)))
    cut = {
        key[:share]: _truncate(safe_str(value).encode("utf-8", _ENCODING_ERRORS), share).decode()
        for key, value in extra.items()
    }
    data = _encode_json(cut).encode("utf-8", _ENCODING_ERRORS)
    if len(data) > MAX_EXTRA:
        note = f"{len(extra)} extra fields ({size} bytes of JSON) left out: over {MAX_EXTRA}"
        data = json.dumps({"logfunnel_extra": note}).encode()
    return data


def _exception_fields(record: logging.LogRecord) -> tuple[bytes, bytes]:
    """``(exception JSON, exc_text)``: the exception as data, or as text when it cannot be."""
    exc_info = record.exc_info
    if not exc_info:
        return b"", (record.exc_text or "").encode("utf-8", _ENCODING_ERRORS)
    from ._exceptions import encode_exception  # only records with an exception pay for it

    data = encode_exception(exc_info)
    if data is not None:
        return data, b""
    return b"", _exception_text(record).encode("utf-8", _ENCODING_ERRORS)


def _exception_text(record: logging.LogRecord) -> str:
    if record.exc_text:
        return record.exc_text
    if record.exc_info and record.exc_info[0] is not None:
        try:
            return _exc_formatter.formatException(record.exc_info)
        except Exception as exc:
            return f"<exception could not be formatted: {type(exc).__name__}>"
    return ""


def _truncate(data: bytes, budget: int) -> bytes:
    if len(data) <= budget:
        return data
    mark = _TRUNCATION_MARK.format(len(data) - budget, len(data)).encode()
    # Cut on a character boundary so the result stays valid UTF-8.
    return data[:budget].decode("utf-8", "ignore").encode() + mark


def encode_record(record: logging.LogRecord, seq: int) -> bytes:
    """One complete record frame (length prefix included) for ``record``."""
    body = record_body(record, seq)
    return _FRAME_PREFIX.pack(len(body) + 1, KIND_RECORD) + body


def record_body(record: logging.LogRecord, seq: int) -> bytes:
    """The structured record: every attribute a sink may format, as plain data."""
    d = record.__dict__
    errors = _ENCODING_ERRORS
    msg, args = record.msg, record.args
    # The common call, a str and no arguments, needs no JSON: the template is the message.
    call = b"" if type(msg) is str and type(args) is tuple and not args else _call_json(msg, args)
    if record.exc_info:
        exception, exc_text = _exception_fields(record)
    else:
        exception, exc_text = b"", (record.exc_text or "").encode("utf-8", errors)
    strings = [
        str(record.name).encode("utf-8", errors),
        safe_message(record).encode("utf-8", errors),
        str(record.levelname).encode("utf-8", errors),
        str(record.pathname).encode("utf-8", errors),
        str(record.filename).encode("utf-8", errors),
        str(record.module).encode("utf-8", errors),
        str(record.funcName or "").encode("utf-8", errors),
        str(record.processName or "").encode("utf-8", errors),
        str(record.threadName or "").encode("utf-8", errors),
        str(d.get("taskName") or "").encode("utf-8", errors),
        exc_text,
        str(record.stack_info or "").encode("utf-8", errors),
        call,
        exception,
        _extra_json(d),
    ]
    if sum(map(len, strings)) + _RECORD.size > _BODY_LIMIT:
        # The JSON fields have their own limits and must stay whole: cut the texts.
        room = _BODY_LIMIT - _RECORD.size - len(call) - len(exception) - len(strings[-1])
        budget = room // _CALL_INDEX - _MARK_ROOM
        strings[:_CALL_INDEX] = [_truncate(s, budget) for s in strings[:_CALL_INDEX]]
    levelno, lineno = record.levelno, record.lineno
    if type(levelno) is not int or not _INT32_MIN <= levelno <= _INT32_MAX:
        levelno = _clamp_int32(levelno)
    if type(lineno) is not int or not _INT32_MIN <= lineno <= _INT32_MAX:
        lineno = _clamp_int32(lineno)
    header = _RECORD.pack(
        record.created,
        record.msecs,
        record.relativeCreated,
        levelno,
        lineno,
        record.process or 0,
        (record.thread or 0) & 0xFFFFFFFFFFFFFFFF,
        seq,
        *map(len, strings),
    )
    return b"".join((header, *strings))


_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1


def encode_text(levelno: int, seq: int, texts: list[str], structured: bytes = b"") -> bytes:
    """A text frame: the record already formatted once per sink format, for the
    collector to write as it is, plus the structured record when a sink needs it."""
    errors = _ENCODING_ERRORS
    if len(texts) == 1 and not structured:
        # The common case (every text sink shares one format): one pack, one join.
        data = texts[0].encode("utf-8", errors)
        if len(data) + 64 <= MAX_FRAME and -(2**31) <= levelno < 2**31:
            return (
                _ONE_TEXT.pack(
                    _ONE_TEXT.size - 4 + len(data), KIND_TEXT, levelno, seq, 1, 0, len(data)
                )
                + data
            )
    parts = [text.encode("utf-8", errors) for text in texts]
    overhead = _TEXT_HEAD.size + 4 * len(parts) + 5 + len(structured)
    if sum(map(len, parts)) + overhead > MAX_FRAME:
        # The structured record is at most _BODY_LIMIT: the texts share the rest.
        budget = (MAX_FRAME - overhead) // len(parts) - _MARK_ROOM
        parts = [_truncate(part, budget) for part in parts]
    head = _TEXT_HEAD.pack(_clamp_int32(levelno), seq, len(parts), len(structured))
    lengths = struct.pack(f"<{len(parts)}I", *map(len, parts))
    size = 1 + len(head) + len(lengths) + sum(map(len, parts)) + len(structured)
    return b"".join((_FRAME_PREFIX.pack(size, KIND_TEXT), head, lengths, *parts, structured))


def decode_text(body: bytes, count: int) -> tuple[int, int, list[bytes], bytes]:
    """``(levelno, seq, texts, structured body)`` of a text frame with ``count`` texts.

    The texts stay bytes: the collector writes them, it does not read them.
    They are checked to be UTF-8 only when a sink decodes them.
    """
    head = _TEXT_HEAD.size
    if len(body) < head:
        raise FrameError(f"text frame too short ({len(body)} bytes)")
    levelno, seq, ntexts, structured_len = _TEXT_HEAD.unpack_from(body, 0)
    if ntexts != count:
        raise FrameError(f"text frame has {ntexts} texts, this collector expects {count}")
    lengths = struct.unpack_from(f"<{ntexts}I", body, head)
    pos = head + 4 * ntexts
    if pos + sum(lengths) + structured_len != len(body):
        raise FrameError("text frame lengths do not match the frame length")
    texts = []
    for length in lengths:
        texts.append(body[pos : pos + length])
        pos += length
    return levelno, seq, texts, body[pos:]


def _clamp_int32(value: object) -> int:
    try:
        number: int = int(value)  # type: ignore[call-overload]
    except Exception:
        return 0
    return max(-(2**31), min(2**31 - 1, number))


def decode_record(body: memoryview | bytes) -> tuple[int, dict[str, Any]]:
    """``(seq, attributes)`` from the body of a record frame (kind byte excluded).

    The attributes are ready for ``make_record``: a LogRecord's ``__dict__``
    plus the producer's merged message under ``MERGED``. Every length is
    checked against the body, so a lying header cannot cause an over-read;
    every JSON field is checked for size and shape, and a rebuilt exception
    is ready in ``exc_info``.
    """
    size = _RECORD.size
    if len(body) < size:
        raise FrameError(f"record frame too short ({len(body)} bytes)")
    fields = _RECORD.unpack_from(body, 0)
    created, msecs, relative, levelno, lineno, process, thread, seq = fields[:8]
    lengths = fields[8:]
    if size + sum(lengths) != len(body):
        raise FrameError("record field lengths do not match the frame length")
    out: dict[str, Any] = {
        "created": created,
        "msecs": msecs,
        "relativeCreated": relative,
        "levelno": levelno,
        "lineno": lineno,
        "process": process,
        "thread": thread,
        "args": (),
        "exc_info": None,
    }
    pos = size
    raw = bytes(body) if isinstance(body, memoryview) else body
    try:
        for name, length in zip(_STRING_FIELDS, lengths, strict=False):
            out[name] = raw[pos : pos + length].decode("utf-8")
            pos += length
    except UnicodeDecodeError as exc:
        raise FrameError(f"record field is not valid UTF-8: {exc}") from None
    call_length, exc_length, extra_length = lengths[_CALL_INDEX:]
    call = raw[pos : pos + call_length]
    pos += call_length
    exception = raw[pos : pos + exc_length]
    extra = raw[pos + exc_length : pos + exc_length + extra_length]
    for optional in ("exc_text", "stack_info", "taskName", "funcName"):
        if not out[optional]:
            out[optional] = None
    if out["taskName"] is None and not _HAS_TASK_NAME:
        del out["taskName"]  # before 3.12 a record has no taskName, and a JSON sink would show it
    message = out["msg"]
    out[MERGED] = message
    if call:
        out["msg"], out["args"] = _decode_call(call)
    if exception:
        if out["exc_text"] is not None:
            raise FrameError("record has both an exception and an exception text")
        from ._exceptions import decode_exception

        out["exc_info"], out["exc_text"] = decode_exception(exception)
    if extra:
        values = _decode_object(extra, MAX_EXTRA, "extra")
        if not isinstance(values, dict):
            raise FrameError("record extra is not a JSON object")
        for key, value in values.items():
            if key not in STANDARD_ATTRS:
                out[key] = value
        out[MERGED] = message  # an extra cannot pose as the message
    return int(seq), out


def _decode_call(data: bytes) -> tuple[Any, Any]:
    """``(msg, args)`` from the call JSON; arrays of arguments become tuples."""
    value = _decode_object(data, MAX_CALL, "call")
    if type(value) is not list or len(value) != 2:
        raise FrameError("record call is not a JSON array of template and arguments")
    msg, args = value
    return msg, tuple(args) if type(args) is list else args


def _decode_object(data: bytes, limit: int, what: str) -> Any:
    import json

    if len(data) > limit:
        raise FrameError(f"record {what} is {len(data)} bytes (limit {limit})")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise FrameError(f"record {what} is not valid JSON: {exc}") from None


_new_record = logging.LogRecord.__new__


class ReceivedRecord(logging.LogRecord):
    """A record rebuilt in the collector (see the module docstring).

    Its ``getMessage()`` is the producer's merged message for as long as
    ``msg`` and ``args`` are the ones that came with it; a filter that
    replaces either gets the stdlib's merge of the new ones.
    """

    __slots__ = ("_logfunnel_args", "_logfunnel_host", "_logfunnel_message", "_logfunnel_msg")
    _logfunnel_message: str
    _logfunnel_msg: object
    _logfunnel_args: object
    # The producer's host (from its hello), for sinks that name it (see ``record_host``).
    # A slot, not an attribute: an ``extra`` named ``host`` stays the user's.
    _logfunnel_host: str

    def getMessage(self) -> str:
        try:
            if self.msg is self._logfunnel_msg and self.args is self._logfunnel_args:
                return self._logfunnel_message
        except AttributeError:  # made some other way than make_record
            pass
        return super().getMessage()

    def __copy__(self) -> ReceivedRecord:
        copy = _new_record(type(self))
        copy.__dict__.update(self.__dict__)
        for slot in ReceivedRecord.__slots__:
            if hasattr(self, slot):
                setattr(copy, slot, getattr(self, slot))
        return copy

    def __reduce__(self) -> tuple[Any, ...]:
        # A plain LogRecord, as SocketHandler sends one: it unpickles anywhere.
        state = dict(self.__dict__)
        state["msg"], state["args"] = self.getMessage(), None
        return (logging.makeLogRecord, (state,))


def make_record(attrs: dict[str, Any], host: str | None = None) -> logging.LogRecord:
    """The collector-side record for ``decode_record``'s attributes, made on ``host``."""
    # LogRecord.__init__ would recompute what the producer already sent.
    record = _new_record(ReceivedRecord)
    message = attrs.pop(MERGED, None)
    record.__dict__.update(attrs)
    if host is not None:
        record._logfunnel_host = host
    if isinstance(message, str):
        record._logfunnel_message = message
        record._logfunnel_msg = record.msg
        record._logfunnel_args = record.args
    return record


def record_host(record: logging.LogRecord) -> str | None:
    """The host that made ``record``, if it came from a producer; None if it was made here."""
    return getattr(record, "_logfunnel_host", None) if type(record) is ReceivedRecord else None


def encode_json(kind: int, value: dict[str, Any]) -> bytes:
    """A control frame (hello, config) carrying a small JSON object."""
    import json

    body = json.dumps(value, separators=(",", ":")).encode()
    return _FRAME_PREFIX.pack(len(body) + 1, kind) + body


def decode_json(body: memoryview | bytes) -> dict[str, Any]:
    """The JSON object of a control frame; anything else is a ``FrameError``."""
    import json

    try:
        value = json.loads(bytes(body))
    except (ValueError, RecursionError) as exc:
        raise FrameError(f"control frame is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise FrameError("control frame is not a JSON object")
    return value
