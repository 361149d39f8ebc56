"""A producer's record stream, read off a buffer: where frames and runs of lines end.

After its handshake a producer sends frames (``u32 length | u8 kind | body``)
or, in line mode, runs of whole lines with a frame behind a NUL byte wherever
a record is not one line (see ``_collector._loop``). These functions find the
boundaries in a buffer of received bytes and check them; they touch no
socket and keep no state, so the collector's loop stays a thin caller and the
framing can be fuzzed directly.
"""

from __future__ import annotations

from ._codec import HEADER, LINE_LIMIT, ONE_TEXT, FrameError

__all__ = ["line_run", "one_text", "read_frame"]

_ONE_TEXT_SIZE = ONE_TEXT.size


def read_frame(buf: bytearray, pos: int, n: int, limit: int) -> tuple[int, int, int]:
    """The frame at ``pos`` of ``buf[:n]``: ``(kind, end, length)``.

    ``end`` is where the next frame starts, or -1 while this one is not all
    there yet; ``length`` is its length field (0 until the header is there),
    so a caller can make room for a large frame before it arrives. A length
    outside 1..``limit`` is a ``FrameError``.
    """
    if n - pos < 5:
        return 0, -1, 0
    length: int
    kind: int
    length, kind = HEADER.unpack_from(buf, pos)
    if length < 1 or length > limit:
        raise FrameError(f"bad frame length {length} (limit {limit})")
    end = pos + 4 + length
    return kind, (end if end <= n else -1), length


def one_text(buf: bytearray, pos: int, end: int) -> tuple[int, int, bytes]:
    """``(levelno, seq, text)`` of a text frame with one text and no structured record.

    The collector's hot path when every sink takes text of one format: one
    unpack and one slice, its lengths checked against the frame's.
    """
    if end - pos < _ONE_TEXT_SIZE:
        raise FrameError("text frame too short")
    _, _, levelno, seq, ntexts, structured, size = ONE_TEXT.unpack_from(buf, pos)
    if ntexts != 1 or structured or _ONE_TEXT_SIZE + size != end - pos:
        raise FrameError("text frame lengths do not match the frame length")
    return levelno, seq, bytes(buf[pos + _ONE_TEXT_SIZE : end])


def line_run(buf: bytearray, pos: int, n: int) -> tuple[int, int]:
    """Line mode at ``pos`` (not a NUL): ``(last, nul)``.

    ``buf[pos:last]`` is the run of whole lines there (empty when no newline
    came yet); ``nul`` is where a frame starts (its NUL byte), or -1. A NUL
    anywhere but right after a newline (a frame inside a line), and a line
    longer than ``LINE_LIMIT`` without its newline, are ``FrameError``s.
    """
    nul = buf.find(b"\0", pos, n)
    stop = n if nul < 0 else nul
    last = buf.rfind(b"\n", pos, stop) + 1 or pos
    if nul < 0:
        if n - last >= LINE_LIMIT:
            raise FrameError(f"a line longer than {LINE_LIMIT} bytes")
    elif last != nul:
        raise FrameError("a frame began inside a line")
    return last, nul
