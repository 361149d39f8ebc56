"""The wire format: records survive the round trip, and lies in a frame are caught."""

from __future__ import annotations

import contextlib
import logging
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logfunnel._protocol._codec import (
    HEADER,
    KIND_RECORD,
    KIND_TEXT,
    MAX_FRAME,
    MERGED,
    FrameError,
    _truncate,
    decode_record,
    decode_text,
    encode_record,
    encode_text,
    record_body,
)


def make_record(msg: object, args: object = None, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("some.logger", logging.WARNING, "/x/y.py", 42, msg, args, None, "fn")
    record.__dict__.update(extra)
    return record


def body_of(frame: bytes) -> tuple[int, bytes]:
    length, kind = HEADER.unpack_from(frame, 0)
    assert length == len(frame) - 4
    return kind, frame[5:]


class TestRecordFrames:
    @given(
        msg=st.text(),
        name=st.text(min_size=1),
        extra=st.dictionaries(
            st.text(min_size=1).filter(lambda k: k.isidentifier() and not k.startswith("_")),
            st.one_of(st.none(), st.booleans(), st.integers(), st.text()),
            max_size=4,
        ),
    )
    def test_round_trip_keeps_message_name_and_extra(
        self, msg: str, name: str, extra: dict[str, object]
    ) -> None:
        """Any text message, logger name and JSON-safe extra comes back as it went."""
        record = make_record(msg)
        record.name = name
        for key, value in extra.items():
            if key not in record.__dict__:
                setattr(record, key, value)
        kind, body = body_of(encode_record(record, 7))
        assert kind == KIND_RECORD
        seq, attrs = decode_record(body)
        assert seq == 7
        expected_msg = msg.encode("utf-8", "backslashreplace").decode("utf-8")
        assert (attrs["msg"], attrs["name"]) == (
            expected_msg,
            name.encode("utf-8", "backslashreplace").decode("utf-8"),
        )
        for key, value in extra.items():
            if key in attrs and key not in logging.makeLogRecord({}).__dict__:
                assert attrs[key] == (
                    value.encode("utf-8", "backslashreplace").decode()
                    if isinstance(value, str)
                    else value
                )

    def test_numbers_survive(self) -> None:
        """Times, level, line, pid and thread id keep their values."""
        record = make_record("m")
        _, attrs = decode_record(body_of(encode_record(record, 0))[1])
        for key in (
            "created",
            "msecs",
            "relativeCreated",
            "levelno",
            "lineno",
            "process",
            "thread",
        ):
            assert attrs[key] == getattr(record, key), key

    @given(st.binary(max_size=300))
    def test_random_bytes_are_a_frame_error_or_a_record(self, data: bytes) -> None:
        """Decoding arbitrary bytes never raises anything but FrameError."""
        with contextlib.suppress(FrameError):
            decode_record(data)

    def test_lying_lengths_are_caught(self) -> None:
        """A header whose field lengths disagree with the frame is refused."""
        body = bytearray(record_body(make_record("hello"), 1))
        msg_length_at = struct.calcsize("<dddiiqQQ") + 4  # after the logger name's length
        struct.pack_into("<I", body, msg_length_at, 999)
        with pytest.raises(FrameError, match="lengths"):
            decode_record(bytes(body))
        with pytest.raises(FrameError, match="too short"):
            decode_record(body[:10])

    def test_invalid_utf8_is_caught(self) -> None:
        """Bytes that are not UTF-8 in a string field are a FrameError, not a crash."""
        body = record_body(make_record("abc"), 1)
        broken = body.replace(b"abc", b"a\xffc")
        with pytest.raises(FrameError, match="UTF-8"):
            decode_record(broken)

    def test_extra_must_be_a_json_object(self) -> None:
        """An extra field that is not a JSON object is refused."""
        body = record_body(make_record("m", None, user="x"), 1)
        assert body.endswith(b'{"user":"x"}')
        with pytest.raises(FrameError, match="JSON"):
            decode_record(body[: -len(b'{"user":"x"}')] + b'["user","x"]')


class TestTextFrames:
    @given(st.lists(st.text(), min_size=1, max_size=3), st.integers(0, 2**63))
    def test_round_trip(self, texts: list[str], seq: int) -> None:
        """Every text of a text frame comes back byte for byte, with level and sequence."""
        kind, body = body_of(encode_text(logging.ERROR, seq, texts))
        assert kind == KIND_TEXT
        levelno, got_seq, got, structured = decode_text(body, len(texts))
        assert (levelno, got_seq, structured) == (logging.ERROR, seq, b"")
        assert got == [t.encode("utf-8", "backslashreplace") for t in texts]

    def test_structured_record_rides_along(self) -> None:
        """A text frame can carry the structured record for sinks that need one."""
        structured = record_body(make_record("m"), 3)
        _, body = body_of(encode_text(logging.INFO, 3, ["line"], structured))
        _, _, texts, carried = decode_text(body, 1)
        assert texts == [b"line"]
        assert decode_record(carried)[1]["msg"] == "m"

    def test_wrong_text_count_is_refused(self) -> None:
        """A frame formatted for another set of sinks is refused."""
        _, body = body_of(encode_text(logging.INFO, 1, ["a", "b"]))
        with pytest.raises(FrameError, match="expects 1"):
            decode_text(body, 1)


class TestTruncation:
    def test_a_huge_record_and_its_text_fit_one_frame(self) -> None:
        """A 63 MB message with its 63 MB line and its structured record stays within MAX_FRAME."""
        huge = "h" * (63 * 1024 * 1024)
        record = make_record("big %s", (huge,))
        frame = encode_text(logging.INFO, 1, [huge + "\n"], record_body(record, 1))
        assert len(frame) - 4 <= MAX_FRAME
        _, body = body_of(frame)
        _, _, texts, structured = decode_text(body, 1)
        assert b"truncated" in texts[0]
        attrs = decode_record(structured)[1]
        assert attrs["msg"] == "big %s"
        assert "truncated" in attrs[MERGED]

    def test_truncation_keeps_utf8_and_says_so(self) -> None:
        """A field cut to fit the frame limit stays valid UTF-8 and carries a visible mark."""
        data = ("é" * 100).encode()
        cut = _truncate(data, 51)
        text = cut.decode("utf-8")
        assert text.startswith("é" * 25)
        assert "truncated" in text
        assert _truncate(b"short", 100) == b"short"
