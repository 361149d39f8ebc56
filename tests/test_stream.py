"""The stream functions of the protocol: frame and line boundaries, fed bytes directly."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logfunnel._protocol._codec import HEADER, LINE_LIMIT, FrameError, encode_text
from logfunnel._protocol._stream import line_run, one_text, read_frame


class TestReadFrame:
    def test_a_frame_arriving_in_pieces_says_how_long_it_will_be(self) -> None:
        """Until a frame is all there its end is -1; once its header is, its length is known."""
        frame = encode_text(logging.INFO, 7, ["hello\n"])
        buf = bytearray(frame)
        assert read_frame(buf, 0, 3, 1 << 20) == (0, -1, 0)
        kind, end, length = read_frame(buf, 0, len(frame) - 1, 1 << 20)
        assert (end, length) == (-1, len(frame) - 4)
        assert read_frame(buf, 0, len(frame), 1 << 20) == (kind, len(frame), len(frame) - 4)

    @pytest.mark.parametrize("length", [0, 1001])
    def test_a_length_out_of_bounds_is_refused(self, length: int) -> None:
        """A length of 0 or over the limit is a FrameError, before any body arrives."""
        with pytest.raises(FrameError, match="bad frame length"):
            read_frame(bytearray(HEADER.pack(length, 5)), 0, 5, 1000)

    def test_one_text_checks_its_lengths(self) -> None:
        """A one-text frame gives its level, number and text; a lying length is refused."""
        frame = bytearray(encode_text(logging.WARNING, 3, ["text\n"]))
        assert one_text(frame, 0, len(frame)) == (logging.WARNING, 3, b"text\n")
        with pytest.raises(FrameError):
            one_text(frame + b"x", 0, len(frame) + 1)


class TestLineRun:
    def test_a_run_ends_at_its_last_newline(self) -> None:
        """The run is every whole line; the rest waits for its newline."""
        assert line_run(bytearray(b"a\nbb\ncc"), 0, 7) == (5, -1)

    def test_a_frame_may_start_only_where_a_line_ended(self) -> None:
        """A NUL right after a newline starts a frame; one inside a line is refused."""
        assert line_run(bytearray(b"a\n\0xx"), 0, 5) == (2, 2)
        with pytest.raises(FrameError, match="inside a line"):
            line_run(bytearray(b"a\nb\0"), 0, 4)

    def test_an_endless_line_is_refused(self) -> None:
        """More than LINE_LIMIT bytes without a newline is a FrameError."""
        buf = bytearray(b"x" * LINE_LIMIT)
        with pytest.raises(FrameError, match="longer than"):
            line_run(buf, 0, len(buf))

    @given(st.lists(st.binary(max_size=20).map(lambda b: b.translate(None, b"\n\0"))))
    def test_whole_lines_are_found_however_the_bytes_are_cut(self, lines: list[bytes]) -> None:
        """Reading a valid stream cut anywhere finds exactly its whole lines, once each."""
        data = b"".join(line + b"\n" for line in lines)
        for cut in range(len(data) + 1):
            buf = bytearray(data[:cut])
            last, nul = line_run(buf, 0, cut)
            assert nul == -1
            assert bytes(buf[:last]) == data[: data.rfind(b"\n", 0, cut) + 1]
