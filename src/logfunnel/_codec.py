"""The wire format: log records as plain data in length-prefixed frames.

Nothing here ever unpickles or evaluates what it reads. A producer turns a
``LogRecord`` into bytes once (message merged, exception text rendered,
``extra`` values made JSON-safe) so that the collector only has to validate
and copy; a frame the decoder does not fully understand raises ``FrameError``
and the caller closes that one connection.

Frame layout (all integers little-endian)::

    u32 length | u8 kind | body (length - 1 bytes)

A record body is a fixed header followed by the UTF-8 bytes of its string
fields, whose lengths are in the header, so decoding is one ``unpack_from``
and a few slices.
"""

from __future__ import annotations

import json
import logging
import struct
from typing import Any, Final, cast

__all__ = [
    "HEADER",
    "KIND_AUTH",
    "KIND_CONFIG",
    "KIND_HELLO",
    "KIND_RECORD",
    "KIND_TEXT",
    "MAX_EXTRA",
    "MAX_FRAME",
    "ONE_TEXT",
    "PROTOCOL_VERSION",
    "STANDARD_ATTRS",
    "FrameError",
    "decode_json",
    "decode_record",
    "decode_text",
    "encode_json",
    "encode_record",
    "encode_text",
    "record_body",
    "safe_message",
    "safe_repr",
]

PROTOCOL_VERSION: Final = 2

#: Largest frame either side accepts. A record bigger than this is truncated
#: by the producer (with a visible marker) instead of being refused.
MAX_FRAME: Final = 64 * 1024 * 1024

KIND_HELLO: Final = 1
KIND_CONFIG: Final = 2
KIND_RECORD: Final = 3
KIND_AUTH: Final = 4
KIND_TEXT: Final = 5

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
_EXTRA_INDEX: Final = len(_STRING_FIELDS)
_RECORD: Final = struct.Struct(f"<dddiiqQQ{len(_STRING_FIELDS) + 1}I")
_FRAME_PREFIX: Final = struct.Struct("<IB")
# levelno, seq, number of texts, length of the structured record (0: none).
_TEXT_HEAD: Final = struct.Struct("<iQHI")
#: A whole text frame header with exactly one text: prefix, head, its length.
ONE_TEXT: Final = struct.Struct("<IBiQHII")
_ONE_TEXT: Final = ONE_TEXT

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

# Parts of a long field kept when a record would exceed MAX_FRAME.
_FIELD_BUDGET: Final = MAX_FRAME // 4
_TRUNCATION_MARK: Final = " ...[logfunnel: truncated {} of {} bytes]"

_ENCODING_ERRORS: Final = "backslashreplace"

_exc_formatter = logging.Formatter()


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


def _json_default(value: object) -> str:
    return safe_repr(value)


def _extra_json(record_dict: dict[str, Any]) -> bytes:
    keys = record_dict.keys() - STANDARD_ATTRS
    if not keys:
        return b""
    extra = {key: record_dict[key] for key in keys if isinstance(key, str)}
    try:
        text = json.dumps(extra, default=_json_default, ensure_ascii=False)
    except Exception:  # circular, too deep, non-string keys inside values...
        text = json.dumps(
            {key: _json_value_or_repr(value) for key, value in extra.items()},
            ensure_ascii=False,
        )
    data = text.encode("utf-8", _ENCODING_ERRORS)
    if len(data) > MAX_EXTRA:
        data = _smaller_extra(extra, len(data))
    return data


def _smaller_extra(extra: dict[str, Any], size: int) -> bytes:
    """Extras over MAX_EXTRA: each value becomes a truncated repr, so the record still goes."""
    share = max(64, MAX_EXTRA // (2 * len(extra)))
    cut = {
        key[:share]: _truncate(safe_repr(value).encode(), share).decode()
        for key, value in extra.items()
    }
    data = json.dumps(cut, ensure_ascii=False).encode("utf-8", _ENCODING_ERRORS)
    if len(data) > MAX_EXTRA:
        note = f"{len(extra)} extra fields ({size} bytes of JSON) left out: over {MAX_EXTRA}"
        data = json.dumps({"logfunnel_extra": note}).encode()
    return data


def _json_value_or_repr(value: object) -> Any:
    try:
        json.dumps(value, default=_json_default)
    except Exception:
        return safe_repr(value)
    return value


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
        _exception_text(record).encode("utf-8", errors),
        str(record.stack_info or "").encode("utf-8", errors),
        _extra_json(d),
    ]
    if sum(map(len, strings)) + _RECORD.size + 1 > MAX_FRAME:
        strings = [_truncate(s, _FIELD_BUDGET // 2) for s in strings]
    header = _RECORD.pack(
        record.created,
        record.msecs,
        record.relativeCreated,
        _clamp_int32(record.levelno),
        _clamp_int32(record.lineno),
        record.process or 0,
        (record.thread or 0) & 0xFFFFFFFFFFFFFFFF,
        seq,
        *map(len, strings),
    )
    return b"".join((header, *strings))


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
    if sum(map(len, parts)) + len(structured) + 64 > MAX_FRAME:
        parts = [_truncate(part, _FIELD_BUDGET // 2) for part in parts]
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
        number = int(cast(Any, value))
    except Exception:
        return 0
    return max(-(2**31), min(2**31 - 1, number))


def decode_record(body: memoryview | bytes) -> tuple[int, dict[str, Any]]:
    """``(seq, attributes)`` from the body of a record frame (kind byte excluded).

    The attributes are ready for a LogRecord's ``__dict__``. Every length is
    checked against the body, so a lying header cannot cause an over-read.
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
        "args": None,
        "exc_info": None,
    }
    pos = size
    raw = bytes(body) if isinstance(body, memoryview) else body
    try:
        for name, length in zip(_STRING_FIELDS, lengths, strict=False):
            out[name] = raw[pos : pos + length].decode("utf-8")
            pos += length
        extra = raw[pos : pos + lengths[_EXTRA_INDEX]]
    except UnicodeDecodeError as exc:
        raise FrameError(f"record field is not valid UTF-8: {exc}") from None
    for optional in ("exc_text", "stack_info", "taskName", "funcName"):
        if not out[optional]:
            out[optional] = None
    if extra:
        if len(extra) > MAX_EXTRA:
            raise FrameError(f"record extra is {len(extra)} bytes (limit {MAX_EXTRA})")
        try:
            values = json.loads(extra)
        except (ValueError, RecursionError) as exc:
            raise FrameError(f"record extra is not valid JSON: {exc}") from None
        if not isinstance(values, dict):
            raise FrameError("record extra is not a JSON object")
        for key, value in values.items():
            if key not in STANDARD_ATTRS:
                out[key] = value
    return int(seq), out


def encode_json(kind: int, value: dict[str, Any]) -> bytes:
    """A control frame (hello, config) carrying a small JSON object."""
    body = json.dumps(value, separators=(",", ":")).encode()
    return _FRAME_PREFIX.pack(len(body) + 1, kind) + body


def decode_json(body: memoryview | bytes) -> dict[str, Any]:
    """The JSON object of a control frame; anything else is a ``FrameError``."""
    try:
        value = json.loads(bytes(body))
    except (ValueError, RecursionError) as exc:
        raise FrameError(f"control frame is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise FrameError("control frame is not a JSON object")
    return value
