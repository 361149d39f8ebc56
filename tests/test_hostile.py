"""Hostile input: a fuzzed decoder, peers that stall or lie, bounded buffers, and access."""

from __future__ import annotations

import ast
import contextlib
import hashlib
import hmac
import json
import logging
import os
import pickle
import re
import shutil
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _peers import (
    closed_by_peer,
    connect,
    handshake,
    hello_frame,
    record_frame,
    recv_exact,
    serve,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logfunnel
from logfunnel._collector import _loop
from logfunnel._collector._listen import listen, remove_private_dir
from logfunnel._collector._loop import Collector
from logfunnel._protocol import _codec, _exceptions
from logfunnel._protocol._address import Address
from logfunnel._protocol._codec import (
    HEADER,
    KIND_AUTH,
    KIND_CONFIG,
    KIND_RECORD,
    MAX_FRAME,
    PROTOCOL_VERSION,
    FrameError,
    decode_json,
    decode_record,
)

SRC = Path(logfunnel.__file__).parent


class Capture(logging.Handler):
    """A sink that keeps every record it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.changed:
            self.records.append(record)
            self.changed.notify_all()

    def messages(self, name: str = "worker") -> list[str]:
        return [r.getMessage() for r in self.records if r.name == name]

    def wait_until(self, count: int, name: str = "worker", timeout: float = 30) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.messages(name)) >= count, timeout)


# -- the decoder under fuzzing ------------------------------------------------------------


def _fuzz_collector() -> tuple[Collector, Any, socket.socket]:
    """A collector that is never started, and a connection object in the record state."""
    left, right = socket.socketpair()
    collector = Collector(left, Address("unix", path="/nonexistent"), [], 0)
    conn = _loop._Connection(right, _loop._STREAM, "fuzz")
    return collector, conn, right


def _feed(collector: Collector, conn: Any, data: bytes) -> None:
    conn.buf = bytearray(data)
    with contextlib.suppress(FrameError):
        collector._frames(conn)
    assert len(conn.buf) <= len(data)


_valid = record_frame("a valid record", 3, user="alice", nested={"a": [1, 2]})


class TestDecoderFuzz:
    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=2048))
    def test_random_record_bodies(self, body: bytes) -> None:
        """Random bytes as a record body decode or raise FrameError, nothing else."""
        with contextlib.suppress(FrameError):
            seq, attrs = decode_record(body)
            assert isinstance(seq, int)
            assert isinstance(attrs, dict)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=2048))
    def test_random_control_bodies(self, body: bytes) -> None:
        """Random bytes as a hello/config body decode to a dict or raise FrameError."""
        with contextlib.suppress(FrameError):
            assert isinstance(decode_json(body), dict)

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.tuples(st.integers(0, len(_valid) - 1), st.integers(0, 255)),
            min_size=1,
            max_size=8,
        ),
        st.integers(0, len(_valid)),
    )
    def test_mutated_and_truncated_frames(self, flips: list[tuple[int, int]], cut: int) -> None:
        """A valid frame with bytes changed and cut short never escapes as another exception."""
        frame = bytearray(_valid)
        for position, value in flips:
            frame[position] = value
        collector, conn, peer = _fuzz_collector()
        try:
            _feed(collector, conn, bytes(frame[:cut]))
            _feed(collector, conn, bytes(frame))
        finally:
            peer.close()

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.binary(max_size=4096))
    def test_random_streams(self, data: bytes) -> None:
        """A random byte stream on a connection raises only FrameError, allocating nothing more."""
        collector, conn, peer = _fuzz_collector()
        try:
            _feed(collector, conn, data)
        finally:
            peer.close()

    @pytest.mark.stress
    @settings(max_examples=50_000, deadline=None)
    @given(st.binary(max_size=8192))
    def test_random_streams_long_run(self, data: bytes) -> None:
        """The stream fuzz, 50,000 examples (stress)."""
        collector, conn, peer = _fuzz_collector()
        try:
            _feed(collector, conn, data)
            with contextlib.suppress(FrameError):
                decode_record(data)
        finally:
            peer.close()

    def test_huge_declared_length_is_refused_before_any_allocation(self) -> None:
        """A header claiming 4 GiB is refused from its 5 header bytes alone."""
        collector, conn, peer = _fuzz_collector()
        try:
            conn.buf = bytearray(struct.pack("<IB", 0xFFFFFFFF, KIND_RECORD))
            with pytest.raises(FrameError, match="bad frame length 4294967295"):
                collector._frames(conn)
            conn.buf = bytearray(struct.pack("<IB", MAX_FRAME + 1, KIND_RECORD))
            with pytest.raises(FrameError, match="bad frame length"):
                collector._frames(conn)
        finally:
            peer.close()

    def test_invalid_utf8_and_deep_nesting_are_frame_errors(self) -> None:
        """Invalid UTF-8 in a field and 100,000-deep JSON in extra are clear FrameErrors."""
        body = bytearray(_valid[5:])
        index = body.index(b"a valid record")
        body[index] = 0xFF
        with pytest.raises(FrameError, match="not valid UTF-8"):
            decode_record(bytes(body))
        deep = record_frame("deep")[5:]
        header_size = _collector_record_header_size()
        fields = list(struct.unpack_from(_codec._RECORD.format, deep, 0))
        nested = b"[" * 100_000 + b"]" * 100_000
        fields[-1] = len(nested)
        rebuilt = struct.pack(_codec._RECORD.format, *fields) + deep[header_size:] + nested
        with pytest.raises(FrameError, match="extra is not valid JSON"):
            decode_record(rebuilt)
        with pytest.raises(FrameError, match="not valid JSON"):
            decode_json(b"[" * 100_000)

    def test_oversized_extra_is_refused(self) -> None:
        """An extra field bigger than the extra limit is refused, not decoded into objects."""
        many = json.dumps({"x": [[] for _ in range(2_000_000)]}).encode()
        deep = record_frame("big extra")[5:]
        header_size = _collector_record_header_size()
        fields = list(struct.unpack_from(_codec._RECORD.format, deep, 0))
        fields[-1] = len(many)
        rebuilt = struct.pack(_codec._RECORD.format, *fields) + deep[header_size:] + many
        with pytest.raises(FrameError, match="extra"):
            decode_record(rebuilt)

    def test_wrong_protocol_version_is_refused(self) -> None:
        """A hello of a protocol version the collector does not read gets a refusal naming
        both versions, then the connection closes with that reason on the collector's side."""
        capture = Capture()
        with serve([capture]) as (collector, address):
            sock = connect(address)
            sock.sendall(hello_frame(version=99))
            sock.settimeout(30)
            received = bytearray()
            while chunk := sock.recv(65536):
                received += chunk
            sock.close()
            stats = collector.stats
        length, kind = HEADER.unpack_from(received)
        assert kind == KIND_CONFIG
        refusal = json.loads(received[HEADER.size : 4 + length])["refused"]
        assert "protocol 99" in refusal
        assert f"protocol {PROTOCOL_VERSION}" in refusal
        assert stats.bad_connections == 1
        [closed] = capture.messages("logfunnel")
        assert closed == f"logfunnel: closed connection 1: {refusal}"


def _collector_record_header_size() -> int:
    return _codec._RECORD.size


# -- the exception data under fuzzing ------------------------------------------------------


def _raised() -> Any:
    try:
        try:
            {}["missing"]  # raises on purpose
        except KeyError as exc:
            raise ValueError("wrapped") from exc
    except ValueError:
        return sys.exc_info()


_with_exception = _codec.encode_record(
    logging.LogRecord("worker", logging.ERROR, __file__, 1, "failed %s", ("x",), _raised()), 5
)
_small = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 4),
    st.integers(2**31 - 2, 2**40),
    st.text(max_size=4),
    st.lists(st.integers(-1, 4), max_size=3),
)
_frames = st.one_of(
    st.lists(_small, min_size=7, max_size=7),
    st.tuples(
        st.text(max_size=8),
        st.none() | st.integers(-1, 2**40),
        st.text(max_size=6),
        st.none() | st.integers(-1, 200),
        st.none() | st.integers(-1, 200),
        st.none() | st.integers(-1, 200),
        st.text(max_size=6),
    ).map(list),
)
_names = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["ValueError", "KeyError", "OSError", "SyntaxError", "ExceptionGroup"]),
    st.sampled_from(["BaseExceptionGroup", "KeyboardInterrupt", "UnicodeDecodeError", "a\0b"]),
)
_nodes = st.fixed_dictionaries(
    {
        "q": _names,
        "n": _names,
        "b": _names,
        "s": st.text(max_size=6),
        "f": st.lists(st.integers(-1, 3), max_size=3),
    },
    optional={
        "m": st.none() | _names | st.sampled_from(["builtins", "__main__", "sys", "logging"]),
        "a": st.lists(_small, max_size=3) | _small,
        "o": st.lists(st.text(max_size=3), max_size=2) | _small,
        "c": st.integers(-1, 4),
        "x": st.integers(-1, 4),
        "p": st.booleans() | _small,
        "g": st.lists(st.integers(-1, 4), max_size=3) | _small,
        "k": st.text(max_size=3) | _small,
        "y": st.lists(_small, min_size=7, max_size=7) | _small,
        "i": st.lists(_small, min_size=2, max_size=2) | _small,
        "z": _small,
    },
)
_exception_data = st.fixed_dictionaries(
    {"e": st.lists(_nodes, max_size=5), "f": st.lists(_frames, max_size=4)}
)


def _replace_field(body: bytes, index: int, data: bytes) -> bytes:
    """``body`` with its ``index``-th string field replaced by ``data``."""
    record = _codec._RECORD
    fields = list(record.unpack_from(body, 0))
    lengths = fields[8:]
    start = record.size + sum(lengths[:index])
    rest = body[start + lengths[index] :]
    fields[8 + index] = len(data)
    return record.pack(*fields) + body[record.size : start] + data + rest


def _node(**fields: Any) -> dict[str, Any]:
    return {"q": "E", "n": "E", "b": "ValueError", "s": "", "f": [], **fields}


def _decode_json(value: Any) -> Any:
    return _exceptions.decode_exception(json.dumps(value).encode())


class TestExceptionDecoderFuzz:
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_exception_data)
    def test_random_exception_data(self, data: dict[str, Any]) -> None:
        """Exception data of any shape decodes to something formattable, or is a FrameError."""
        with contextlib.suppress(FrameError):
            exc_info, text = _decode_json(data)
            assert (exc_info is None) != (text is None)
            if exc_info is not None:
                logging.Formatter().formatException(exc_info)

    @settings(max_examples=200, deadline=None)
    @given(st.recursive(_small, lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)))
    def test_random_json_values(self, value: Any) -> None:
        """Any JSON value as exception data is refused with FrameError or decoded."""
        with contextlib.suppress(FrameError):
            _decode_json(value)

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.tuples(st.integers(0, len(_with_exception) - 1), st.integers(0, 255)),
            min_size=1,
            max_size=8,
        ),
    )
    def test_mutated_frames_with_an_exception(self, flips: list[tuple[int, int]]) -> None:
        """A frame carrying an exception, with bytes changed, never escapes as another error."""
        frame = bytearray(_with_exception)
        for position, value in flips:
            frame[position] = value
        collector, conn, peer = _fuzz_collector()
        try:
            _feed(collector, conn, bytes(frame))
        finally:
            peer.close()

    @pytest.mark.parametrize(
        ("data", "problem"),
        [
            ({"e": [_node(c=i + 1) for i in range(300)] + [_node()], "f": []}, "too many"),
            ({"e": [_node()], "f": [["f", 1, "n", 1, 0, 1, ""]] * 5000}, "too many frames"),
            (
                {
                    "e": [_node(f=[0] * 5000, c=1), _node(f=[0] * 5000)],
                    "f": [["f", 1, "n", 1, 0, 1, ""]],
                },
                "entries",
            ),
            ({"e": [_node(c=1), _node(c=0)], "f": []}, "not a later"),
            ({"e": [_node(c=1, x=1), _node()], "f": []}, "unshared"),
            ({"e": [_node(), _node()], "f": []}, "linked from nowhere"),
            ({"e": [_node(g=[1]), _node()], "f": []}, "without members or message"),
            ({"e": [_node(f=[3])], "f": []}, "frames that are not there"),
            ({"e": [_node(q=1)], "f": []}, "not a string"),
            ({"e": [_node(extra=1)], "f": []}, "unknown fields"),
            ({"e": [_node()], "f": [["f", -1, "n", 1, 0, 1, ""]]}, "line or column"),
            ({"e": [], "f": []}, "no exceptions"),
            ([], "exactly"),
        ],
        ids=[
            "10k-chain",
            "frames",
            "entries",
            "cycle",
            "shared",
            "orphan",
            "group",
            "frame-ref",
            "name",
            "field",
            "position",
            "empty",
            "shape",
        ],
    )
    def test_lies_and_limits_are_frame_errors(self, data: Any, problem: str) -> None:
        """Cycles, shared or orphan links, bad types and data over the limits are FrameErrors."""
        with pytest.raises(FrameError, match=problem):
            _decode_json(data)

    def test_oversized_and_deep_exception_data_is_refused_unparsed(self) -> None:
        """Exception JSON over MAX_JSON or 100,000 deep is a FrameError before objects are built."""
        with pytest.raises(FrameError, match="limit"):
            _exceptions.decode_exception(b"[" + b"[]," * _exceptions.MAX_JSON + b"[]]")
        with pytest.raises(FrameError, match="not valid JSON"):
            _exceptions.decode_exception(b"[" * 100_000 + b"]" * 100_000)
        body = _codec.record_body(logging.LogRecord("n", 20, "p", 1, "%s", ("x",), None), 0)
        with pytest.raises(FrameError, match=r"call is .* bytes"):
            decode_record(_replace_field(body, _codec._CALL_INDEX, b"[" * (_codec.MAX_CALL + 1)))
        with pytest.raises(FrameError, match="call is not a JSON array"):
            decode_record(_replace_field(body, _codec._CALL_INDEX, b'{"msg": 1}'))
        with pytest.raises(FrameError, match="both an exception and an exception text"):
            decode_record(_replace_field(_with_exception[5:], 10, b"text too"))

    def test_names_the_interpreter_refuses_still_give_a_record(self) -> None:
        """NUL or lone surrogates in names, and inverted columns, still give a record."""
        frames = [
            ["a\0b.py", 2**31 - 1, "f\ud800", 3, 9, 2, "x"],
            ["\ud800", 0, "\0", None, 5, 5, ""],
        ]
        data = {"e": [_node(q="A\0B", n="\ud800", m="\0", f=[0, 1])], "f": frames}
        exc_info, text = _decode_json(data)
        assert text is None
        assert "A\0B" in logging.Formatter().formatException(exc_info)


HOSTILE = {
    "random-bytes": os.urandom(4096),
    "huge-length": struct.pack("<IB", 0x7FFFFFFF, KIND_RECORD),
    "wrong-version": hello_frame(version=PROTOCOL_VERSION + 1),
    "record-before-hello": record_frame("sneaky"),
    "bad-utf8": hello_frame()
    + record_frame("bad \udcff", 0).replace(b"bad \\udcff", b"bad \xff\xfe\xfd\xfc\xfb\xfa"),
    "lying-lengths": hello_frame() + struct.pack("<IB", 200, KIND_RECORD) + b"\0" * 199,
}


class TestHostilePeers:
    @pytest.mark.parametrize("payload", list(HOSTILE.values()), ids=list(HOSTILE))
    def test_hostile_connection_is_closed_and_the_others_served(self, payload: bytes) -> None:
        """A hostile stream closes its own connection with a clear error; producers go on."""
        capture = Capture()
        with logfunnel.Funnel(handlers=[capture]) as funnel:
            path = funnel.address[len("unix:") :]
            good = logfunnel.FunnelHandler(funnel.address)
            for number in range(100):
                if number == 50:
                    with socket.socket(socket.AF_UNIX) as evil:
                        evil.connect(path)
                        evil.sendall(payload)
                        assert closed_by_peer(evil)
                good.handle(
                    logging.LogRecord("worker", logging.INFO, "f", 1, f"good {number}", None, None)
                )
            good.close()
            stats = funnel.stats
            running = funnel.running
        assert running
        assert capture.messages() == [f"good {n}" for n in range(100)]
        assert stats.bad_connections == 1
        (error,) = capture.messages("logfunnel")
        assert re.match(r"logfunnel: closed (connection 3|pid 4242 on h): \w", error), error

    def test_idle_and_stalled_peers_are_closed_idle_producers_are_not(self) -> None:
        """A peer silent in its handshake or stopped mid-frame is closed; an idle producer stays."""
        capture = Capture()
        with serve([capture], handshake_timeout=0.3, stall_timeout=0.3) as (collector, address):
            idle_producer = handshake(address)
            silent = connect(address)
            stalled = handshake(address)
            stalled.sendall(record_frame("never finished")[:40])
            started = time.monotonic()
            assert closed_by_peer(silent)
            assert closed_by_peer(stalled)
            waited = time.monotonic() - started
            # The quiet but well-behaved producer is still served.
            idle_producer.sendall(record_frame("still here", 0))
            assert capture.wait_until(1)
            idle_producer.close()
            stats = collector.stats
        assert 0.2 < waited < 10
        assert capture.messages() == ["still here"]
        assert stats.timeouts == 2
        errors = capture.messages("logfunnel")
        assert any("no handshake for 0.3 s" in e for e in errors)
        assert any("stopped inside a frame for 0.3 s (40 bytes pending)" in e for e in errors)

    def test_tcp_peer_silent_before_authenticating_is_closed(self) -> None:
        """Over TCP a peer that never answers the challenge is closed after the timeout."""
        with serve([Capture()], "tcp://127.0.0.1:0", handshake_timeout=0.3) as (collector, addr):
            sock = connect(addr)
            assert closed_by_peer(sock)
            sock.close()
            assert collector.stats.timeouts == 1


class TestBufferBudget:
    def test_large_frames_share_one_budget(self) -> None:
        """Four peers sending 6 MiB frames at once hold at most the budget plus a chunk each."""
        budget = 8 * 1024 * 1024
        capture = Capture()
        sock, address, private_dir = listen(None, None)
        collector = Collector(sock, address, [capture], 0, buffer_budget=budget, max_frame=budget)
        clients = []
        try:
            for _ in range(4):
                client = connect(address)
                client.sendall(hello_frame())
                clients.append(client)
            collector._accept_pending()
            for fd in list(collector._connections):
                collector._read(fd)
            frames = [
                memoryview(record_frame(f"big {i} " + "x" * (6 * 1024 * 1024))) for i in range(4)
            ]
            for client in clients:
                client.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    while client.recv(4096):
                        pass  # the config answer
            peak = 0
            for _ in range(10_000):
                for i, client in enumerate(clients):
                    with contextlib.suppress(BlockingIOError):
                        while frames[i]:
                            frames[i] = frames[i][client.send(frames[i][: 1 << 20]) :]
                for fd in list(collector._connections):
                    collector._read_available(fd)
                held = sum(len(c.buf) for c in collector._connections.values())
                peak = max(peak, held)
                if len(capture.records) == 4:
                    break
        finally:
            for client in clients:
                client.close()
            collector.stop(30)
            remove_private_dir(private_dir, address.path or None)
        assert sorted(r.getMessage()[:6] for r in capture.records) == [
            "big 0 ",
            "big 1 ",
            "big 2 ",
            "big 3 ",
        ]
        chunk = _loop._RECV_SIZE
        assert peak <= budget + 3 * 2 * chunk, f"held {peak} bytes at once"


class TestAccess:
    def test_socket_directory_is_private(self) -> None:
        """The socket's directory is 0700 and owned by us; the socket itself is not world-open."""
        with logfunnel.Funnel(handlers=[Capture()]) as funnel:
            path = Path(funnel.address[len("unix:") :])
            mode = stat.S_IMODE(path.parent.stat().st_mode)
            assert mode == 0o700
            assert path.parent.stat().st_uid == os.getuid()

    @pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
    def test_another_user_can_neither_connect_nor_list(self) -> None:
        """A process of another user (nobody) cannot connect to the socket nor list its folder."""
        python = shutil.which("python3", path="/usr/bin:/bin")
        if python is None:
            pytest.skip("no system python3 that another user may run")
        probe = (
            "import os, socket, sys\n"
            "path = sys.argv[1]\n"
            "out = []\n"
            "try:\n"
            "    socket.socket(socket.AF_UNIX).connect(path); out.append('connected')\n"
            "except PermissionError: out.append('connect refused')\n"
            "try:\n"
            "    os.listdir(os.path.dirname(path)); out.append('listed')\n"
            "except PermissionError: out.append('list refused')\n"
            "print(','.join(out))\n"
        )
        for kind in ("thread", "process"):
            options: dict[str, Any] = (
                {"handlers": [Capture()]} if kind == "thread" else {"console": True}
            )
            with logfunnel.Funnel(collector=kind, **options) as funnel:
                path = funnel.address[len("unix:") :]
                result = subprocess.run(
                    [python, "-c", probe, path],
                    user=65534,
                    group=65534,
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=True,
                    cwd="/",
                )
            assert result.stdout.strip() == "connect refused,list refused", kind

    def test_unauthenticated_tcp_peers_never_get_a_record_in(self) -> None:
        """Records sent without auth, with a wrong answer or a replayed one are never accepted."""
        capture = Capture()
        with logfunnel.Funnel(handlers=[capture], listen="tcp://127.0.0.1:0") as funnel:
            address = logfunnel._protocol._address.parse_address(funnel.address)
            assert address.key is not None
            records = hello_frame() + record_frame("intruder", 0)

            def attempt(answer: bytes | None) -> None:
                sock = connect(address)
                recv_exact(sock, 40)  # the challenge, which this peer cannot answer
                if answer is not None:
                    body = answer + os.urandom(32)
                    sock.sendall(struct.pack("<IB", len(body) + 1, KIND_AUTH) + body + records)
                else:
                    sock.sendall(records)
                assert closed_by_peer(sock)
                sock.close()

            attempt(None)  # straight to records
            attempt(os.urandom(32))  # a wrong answer
            # A replay: the right answer to another connection's challenge.
            sniffed = connect(address)
            old_nonce = recv_exact(sniffed, 40)[8:]
            sniffed.close()
            attempt(hmac.new(address.key, old_nonce, hashlib.sha256).digest())
            logging.getLogger("worker").warning("the owner")
            stats = funnel.stats
        assert capture.messages() == ["the owner"]
        assert stats.bad_connections == 3
        errors = capture.messages("logfunnel")
        assert sum("authenticat" in e for e in errors) == 3

    def test_pickles_anywhere_are_bad_input_or_plain_text(self, tmp_path: Path) -> None:
        """A pickle as a record body, a field or pre-auth bytes is never unpickled."""
        marker = tmp_path / "pwned"

        class Exploit:
            def __reduce__(self) -> tuple[Any, ...]:
                return (Path.touch, (marker,))

        payload = pickle.dumps(Exploit())
        capture = Capture()
        with logfunnel.Funnel(handlers=[capture]) as funnel:
            path = funnel.address[len("unix:") :]
            with socket.socket(socket.AF_UNIX) as evil:
                evil.connect(path)
                evil.sendall(hello_frame())
                evil.sendall(struct.pack("<IB", len(payload) + 1, KIND_RECORD) + payload)
                assert closed_by_peer(evil)
            as_text = payload.decode("latin-1")
            logging.getLogger("worker").warning("%s", as_text, extra={"blob": as_text})
        with logfunnel.Funnel(handlers=[capture], listen="tcp://127.0.0.1:0") as funnel:
            address = logfunnel._protocol._address.parse_address(funnel.address)
            sock = connect(address)
            sock.sendall(struct.pack("<IB", len(payload) + 1, KIND_AUTH) + payload)
            assert closed_by_peer(sock)
            sock.close()
        assert not marker.exists()
        (record,) = [r for r in capture.records if r.name == "worker"]
        assert record.getMessage() == as_text
        assert record.blob == as_text  # type: ignore[attr-defined]

    def test_nothing_in_the_package_can_unpickle_or_evaluate(self) -> None:
        """No module of the package imports pickle, marshal or shelve, or calls eval or exec."""
        banned_modules = {"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle"}
        banned_calls = {"eval", "exec", "__import__"}
        found = []
        for path in sorted(SRC.rglob("*.py")):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    found += [(path.name, a.name) for a in node.names if a.name in banned_modules]
                elif isinstance(node, ast.ImportFrom) and node.module in banned_modules:
                    found.append((path.name, node.module))
                elif (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id in banned_calls
                ):
                    found.append((path.name, node.func.id))
        assert found == []
