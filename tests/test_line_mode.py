"""Line mode: bare lines on the wire when every sink is a text sink of one format and level.

The collector offers it in the handshake; producers then send a one-line
record as its finished line, and anything else as a frame behind a NUL byte.
These tests prove when it is used, that the output is exactly what frames
would give (whole records, once, in order, rotation between records), and
that a peer which abuses it loses only its own connection.
"""

from __future__ import annotations

import contextlib
import io
import logging
import logging.handlers
import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import _workers
import pytest
from _peers import closed_by_peer, handshake, serve
from _support import JOIN_TIMEOUT, join_all
from hypothesis import given, settings
from hypothesis import strategies as st

import logfunnel
from logfunnel._audit import numbered_set
from logfunnel._collector import _loop
from logfunnel._collector._loop import Collector
from logfunnel._protocol._address import Address, parse_address
from logfunnel._protocol._codec import LINE_LIMIT, FrameError, encode_text
from logfunnel._sinks._writer import TextWriter

#: Each record starts with this, so multi-line records can be told apart.
MARK = "@@ "
FORMAT = MARK + "%(message)s"


def file_sink(path: Path, level: int = logging.NOTSET, fmt: str = FORMAT) -> logging.FileHandler:
    sink = logging.FileHandler(path, encoding="utf-8")
    sink.setFormatter(logging.Formatter(fmt))
    sink.setLevel(level)
    return sink


def records_of(text: str) -> list[str]:
    """The records of a file written with ``FORMAT``, each without its mark and last newline."""
    assert text.startswith(MARK) or not text
    assert text.endswith("\n") or not text
    return text[len(MARK) : -1].split("\n" + MARK) if text else []


def line_level(funnel: logfunnel.Funnel) -> int | None:
    """The line mode level the funnel's collector offered its producers (None: frames)."""
    handler = logfunnel.attached()
    assert handler is not None
    assert handler.address == str(parse_address(funnel.address))
    level: int | None = handler.config["lines"]
    return level


class TestWhenLineModeIsUsed:
    def test_one_file_sink(self, tmp_path: Path) -> None:
        """The plainest set-up, a Funnel with a file name, gets line mode."""
        with logfunnel.Funnel(tmp_path / "app.log", level=logging.INFO) as funnel:
            assert line_level(funnel) == logging.NOTSET

    def test_file_and_console_at_one_level(self, tmp_path: Path) -> None:
        """Two text sinks sharing a format and a level still get line mode."""
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter(FORMAT))
        console.setLevel(logging.INFO)
        sinks = [file_sink(tmp_path / "app.log", logging.INFO), console]
        with logfunnel.Funnel(handlers=sinks) as funnel:
            assert line_level(funnel) == logging.INFO

    @pytest.mark.parametrize(
        "setup", ["two-levels", "drop", "record-sink", "terminator", "formats"]
    )
    def test_other_setups_get_frames(self, setup: str, tmp_path: Path) -> None:
        """Where a line could not say what a sink needs, frames are used and output is right."""
        sinks: list[logging.Handler] = [file_sink(tmp_path / "a.log")]
        options: dict[str, str] = {}
        if setup == "two-levels":
            sinks.append(file_sink(tmp_path / "b.log", logging.WARNING))
        elif setup == "drop":
            options["overflow"] = "drop"
        elif setup == "record-sink":
            sinks.append(logging.handlers.BufferingHandler(1000))  # takes records
        elif setup == "terminator":
            sinks[0].terminator = "\r\n"  # type: ignore[attr-defined]
        else:
            sinks.append(file_sink(tmp_path / "b.log", fmt="%(levelname)s %(message)s"))
        with logfunnel.Funnel(handlers=sinks, **options) as funnel:  # type: ignore[arg-type]
            assert line_level(funnel) is None
            logging.getLogger("worker").warning("one line")
        expected = "@@ one line\r\n" if setup == "terminator" else "@@ one line\n"
        assert (tmp_path / "a.log").read_bytes() == expected.encode()


class TestOutput:
    def test_mixed_records_arrive_whole_once_in_order(
        self, start_method: str, tmp_path: Path
    ) -> None:
        """Lines, multi-line, NUL, non-ASCII, over-long and traceback records all land intact."""
        path = tmp_path / "app.log"
        workers, count = 3, 600
        with logfunnel.Funnel(handlers=[file_sink(path)]) as funnel:
            assert line_level(funnel) == logging.NOTSET
            ctx = funnel.context(start_method)
            procs = [
                ctx.Process(target=_workers.mixed_records, args=(w, count)) for w in range(workers)
            ]
            for proc in procs:
                proc.start()
            join_all(procs, exitcode=0)
            stats = funnel.stats
        by_worker: dict[int, list[str]] = {}
        for record in records_of(path.read_text(encoding="utf-8")):
            match = re.match(r"w(\d+) n", record)
            assert match, f"torn or foreign record {record[:80]!r}"
            by_worker.setdefault(int(match.group(1)), []).append(record)
        for worker in range(workers):
            *plain, traceback = by_worker[worker]
            assert plain == [_workers.mixed_message(worker, n) for n in range(count)]
            assert traceback.startswith(f"w{worker} n{count} traceback\nTraceback (most recent")
            assert traceback.endswith(f"ValueError: w{worker} failed on purpose")
        assert stats.records == workers * (count + 1)
        assert (stats.partial_frames, stats.bad_connections, stats.gaps) == (0, 0, 0)

    def test_size_rotation_never_splits_a_record(self, start_method: str, tmp_path: Path) -> None:
        """Rotation falls between records, also inside a run of lines read in one go."""
        path = tmp_path / "app.log"
        sink = logging.handlers.RotatingFileHandler(
            path, maxBytes=512, backupCount=10_000, encoding="utf-8"
        )
        sink.setFormatter(logging.Formatter(FORMAT))
        with logfunnel.Funnel(handlers=[sink]) as funnel:
            ctx = funnel.context(start_method)
            procs = [ctx.Process(target=_workers.mixed_records, args=(w, 1000)) for w in range(2)]
            for proc in procs:
                proc.start()
            join_all(procs, exitcode=0)
        files = numbered_set(path)
        assert len(files) > 25
        found: dict[int, list[str]] = {}
        for file in files:
            records = records_of(file.read_text(encoding="utf-8"))
            # Only a record bigger than the limit on its own may make a file bigger.
            assert file.stat().st_size <= 512 or len(records) == 1
            for record in records:
                if record.startswith("logfunnel: sink "):
                    # The collector's own notice (a sink moved to its own thread on a
                    # loaded machine) is a whole record of its own, not a split one.
                    continue
                match = re.match(r"w(\d+) n", record)
                assert match, f"a record split by a rotation: {record[:80]!r}"
                found.setdefault(int(match.group(1)), []).append(record)
        for worker in range(2):
            assert found[worker][:-1] == [_workers.mixed_message(worker, n) for n in range(1000)]

    def test_a_run_of_lines_is_split_where_a_rotation_falls(self, tmp_path: Path) -> None:
        """A run read in one go rotates between its lines; a multi-line record stays whole."""
        path = tmp_path / "app.log"
        sink = logging.handlers.RotatingFileHandler(path, maxBytes=10, backupCount=100)
        writer = TextWriter(sink)
        writer.pending += [bytearray(b"aaaa\nbbbb\ncccc\n"), b"dd\nee\n", bytearray(b"ffff\n")]
        writer.flush()
        sink.close()
        files = numbered_set(path)
        assert [file.read_bytes() for file in files] == [
            b"aaaa\n",
            b"bbbb\n",
            b"cccc\n",
            b"dd\nee\n",
            b"ffff\n",
        ]

    def test_records_below_the_sinks_level_are_not_written(self, tmp_path: Path) -> None:
        """A producer whose own level is lower than every sink's still sends no such record."""
        path = tmp_path / "app.log"
        with logfunnel.Funnel(handlers=[file_sink(path, logging.INFO)]) as funnel:
            handler = logfunnel.attach(funnel.address, level=logging.DEBUG)
            logging.getLogger("worker").debug("not wanted")
            logging.getLogger("worker").info("wanted")
            sent = handler._seq
            stats = funnel.stats
        assert path.read_text() == "@@ wanted\n"
        assert sent == 1
        assert stats.gaps == 0


# -- peers that abuse line mode -----------------------------------------------------------


@contextlib.contextmanager
def line_collector(path: Path, **options: float) -> Iterator[tuple[Collector, Address]]:
    """A started line-mode collector writing to ``path`` with ``FORMAT``.

    Raw peers send bare lines, so in the file the collector's own notices
    are the lines that start with the mark.
    """
    with serve([file_sink(path)], **options) as (collector, address):
        assert collector._line_level == logging.NOTSET
        yield collector, address


def split_notices(path: Path) -> tuple[list[str], list[str]]:
    """(the lines raw peers sent, the collector's notices) in ``path``."""
    lines = path.read_text().splitlines()
    return (
        [line for line in lines if not line.startswith(MARK)],
        [line[len(MARK) :] for line in lines if line.startswith(MARK)],
    )


class TestBadInput:
    def test_a_line_cut_short_is_reported_and_the_whole_lines_kept(self, tmp_path: Path) -> None:
        """A producer that ends in the middle of a line loses that part only, and says so."""
        path = tmp_path / "app.log"
        with line_collector(path) as (collector, address):
            sock = handshake(address)
            sock.sendall(b"one\ntwo\nthr")
            sock.close()
            assert collector.wait_idle(JOIN_TIMEOUT)
            stats = collector.stats
        lines, notices = split_notices(path)
        assert lines == ["one", "two"]
        assert notices == [
            "logfunnel: pid 4242 on h ended inside a line; discarded 3 partial bytes"
        ]
        assert (stats.records, stats.partial_frames) == (2, 1)

    def test_a_peer_stopped_inside_a_line_is_closed_an_idle_one_is_not(
        self, tmp_path: Path
    ) -> None:
        """Half a line and then silence is a stall; whole lines and then silence are not."""
        path = tmp_path / "app.log"
        with line_collector(path, stall_timeout=0.3) as (collector, address):
            idle = handshake(address, pid=1)
            idle.sendall(b"whole\n")
            stalled = handshake(address, pid=2)
            stalled.sendall(b"half a li")
            assert closed_by_peer(stalled)
            idle.sendall(b"still served\n")
            idle.close()
            assert collector.wait_idle(JOIN_TIMEOUT)
            stats = collector.stats
        lines, notices = split_notices(path)
        assert lines == ["whole", "still served"]
        assert notices == [
            "logfunnel: closed pid 2 on h: stopped inside a line for 0.3 s (9 bytes pending)"
        ]
        assert stats.timeouts == 1

    @pytest.mark.parametrize("abuse", ["overlong", "nul-inside", "bad-frame"])
    def test_abuse_closes_that_connection_only(self, abuse: str, tmp_path: Path) -> None:
        """An endless line, a NUL inside a line or a bad frame after a NUL: closed, with why."""
        path = tmp_path / "app.log"
        payload = {
            "overlong": b"x" * (LINE_LIMIT + 1),
            "nul-inside": b"whole\nhalf\0rest\n",
            "bad-frame": b"whole\n\0\xff\xff\xff\x7f\x05",
        }[abuse]
        reason = {
            "overlong": f"a line longer than {LINE_LIMIT} bytes",
            "nul-inside": "a frame began inside a line",
            "bad-frame": "bad frame length",
        }[abuse]
        with line_collector(path) as (collector, address):
            good = handshake(address, pid=1)
            evil = handshake(address, pid=2)
            evil.sendall(payload)
            assert closed_by_peer(evil)
            evil.close()
            good.sendall(b"still served\n")
            good.close()
            assert collector.wait_idle(JOIN_TIMEOUT)
            stats = collector.stats
        assert stats.bad_connections == 1
        lines, notices = split_notices(path)
        assert "still served" in lines
        assert not any("rest" in line or "xxx" in line for line in lines)
        (notice,) = notices
        assert notice.startswith("logfunnel: closed pid 2 on h: ")
        assert reason in notice

    def test_a_gap_across_a_reconnect_is_reported(self, tmp_path: Path) -> None:
        """Lines carry no numbers, yet records lost between two connections are still seen."""
        path = tmp_path / "app.log"
        with line_collector(path) as (collector, address):
            first = handshake(address, pid=7, seq=0)
            first.sendall(b"n0\nn1\nn2\n")
            first.close()
            assert collector.wait_idle(JOIN_TIMEOUT)
            second = handshake(address, pid=7, seq=5)
            second.sendall(b"n5\n")
            # A frame carries its number too: one that skips ahead is a gap as well.
            second.sendall(b"\0" + encode_text(logging.INFO, 7, ["n7\n"]))
            second.close()
            assert collector.wait_idle(JOIN_TIMEOUT)
            stats = collector.stats
        lines, notices = split_notices(path)
        assert lines == ["n0", "n1", "n2", "n5", "n7"]
        assert notices == [
            "logfunnel: 2 record(s) from pid 7 on h never arrived (sequence 3 to 4)",
            "logfunnel: 1 record(s) from pid 7 on h never arrived (sequence 6 to 6)",
        ]
        assert (stats.gaps, stats.missing_records) == (2, 3)


# -- the line parser under fuzzing ---------------------------------------------------------


def _unstarted_line_collector() -> tuple[Collector, _loop._Connection]:
    left, right = socket.socketpair()
    sink = logging.StreamHandler(io.StringIO())
    collector = Collector(left, Address("unix", path="/nonexistent"), [sink], 0)
    assert collector._line_level == logging.NOTSET
    return collector, _loop._Connection(right, _loop._STREAM, "fuzz")


def _parse(chunks: list[bytes]) -> tuple[bytes, int, bytes]:
    """Feed ``chunks`` one read at a time: (what the sink gets, records, bytes left)."""
    collector, conn = _unstarted_line_collector()
    for chunk in chunks:
        conn.buf += chunk
        collector._lines(conn)
    return b"".join(collector.plan.writers[0].pending), collector.stats.records, bytes(conn.buf)


_no_break = st.characters(blacklist_characters="\n\0", blacklist_categories=["Cs"])
#: (sent as a frame, text): a frame may hold any text, a line none with a newline or NUL.
_records = st.one_of(
    st.tuples(st.just(True), st.text(min_size=1, max_size=30)),
    st.tuples(st.just(False), st.text(_no_break, max_size=40)),
)


def _wire(records: list[tuple[bool, str]]) -> tuple[bytes, bytes]:
    """(the stream a producer sends for ``records``, what the sink must get)."""
    stream, sink = [], []
    for seq, (framed, text) in enumerate(records):
        data = (text + "\n").encode("utf-8", "backslashreplace")
        stream.append(b"\0" + encode_text(logging.INFO, seq, [text + "\n"]) if framed else data)
        sink.append(data)
    return b"".join(stream), b"".join(sink)


class TestLineParserFuzz:
    @settings(max_examples=300, deadline=None)
    @given(st.lists(_records, max_size=30), st.lists(st.integers(0, 2000), max_size=8))
    def test_any_split_of_a_valid_stream_reads_the_same(
        self, records: list[tuple[bool, str]], cuts: list[int]
    ) -> None:
        """However reads cut a stream of lines and frames, the sink gets the same bytes."""
        stream, expected = _wire(records)
        bounds = sorted({min(cut, len(stream)) for cut in cuts})
        chunks = [stream[a:b] for a, b in zip([0, *bounds], [*bounds, len(stream)], strict=True)]
        sink, count, left = _parse(chunks)
        assert (sink, count, left) == (expected, len(records), b"")

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=5))
    def test_random_bytes_never_fail_but_as_a_frame_error(
        self, data: bytes, cuts: list[int]
    ) -> None:
        """Garbage in line mode is a FrameError (the connection closes), never anything else."""
        collector, conn = _unstarted_line_collector()
        bounds = sorted({min(cut, len(data)) for cut in cuts})
        try:
            for a, b in zip([0, *bounds], [*bounds, len(data)], strict=True):
                conn.buf += data[a:b]
                collector._lines(conn)
        except FrameError:
            return
        assert len(conn.buf) <= len(data)
