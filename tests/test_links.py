"""Over TCP, delivery is acknowledged: links that drop, reset or stall lose and double
nothing, and each producer's order is kept."""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _link_workers import attach_and_log
from _peers import closed_by_peer, recv_exact, serve
from _proxy import FaultProxy
from _support import JOIN_TIMEOUT, Records, audit, join_all

import logfunnel
from logfunnel._producer._connect import client_handshake, open_ack_channel
from logfunnel._protocol._acks import AckReader, ack_frame
from logfunnel._protocol._address import parse_address
from logfunnel._protocol._codec import HEADER, decode_json, encode_record, encode_text
from logfunnel._protocol._handshake import challenge_frame, check_auth, config_frame

WORKERS = 8
RECORDS = 1_500


def run_through_proxy(
    tmp_path: Path,
    method: str,
    faults: int,
    seed: int,
    records: int = RECORDS,
    cut_after: tuple[int, int] = (1_000, 120_000),
    frames: bool = False,
    workers: int = WORKERS,
    listen: str = "tcp://127.0.0.1:0",
    **funnel_options: Any,
) -> tuple[Path, dict[str, int], Any]:
    """``workers`` producers log ``records`` each through a ``FaultProxy`` in front of a
    funnel listening on ``listen`` (TCP or TLS); the log, the faults done, and the
    collector's counts."""
    path = tmp_path / "links.log"
    sink = logging.FileHandler(path, encoding="utf-8")
    sink.setFormatter(logging.Formatter(logfunnel.DEFAULT_FORMAT))
    # A second sink that wants whole records turns line mode off: numbered frames.
    sinks = [sink, logging.NullHandler()] if frames else [sink]
    funnel_options = {"inherit": False, **funnel_options}
    with logfunnel.Funnel(handlers=sinks, listen=listen, level="INFO", **funnel_options) as funnel:
        address = parse_address(funnel.address)
        assert address.key is not None
        target = (address.host, address.port)
        with FaultProxy(target, faults=faults, seed=seed, cut_after=cut_after) as proxy:
            through = f"{address.scheme}://127.0.0.1:{proxy.port}?key={address.key.hex()}"
            ctx = multiprocessing.get_context(method)
            procs = [
                ctx.Process(target=attach_and_log, args=(through, worker, records))
                for worker in range(workers)
            ]
            for proc in procs:
                proc.start()
            join_all(procs, exitcode=0)
            done = dict(proxy.done)
        stats = funnel.stats
    sink.close()
    return path, done, stats


class TestLinkFaults:
    @pytest.mark.parametrize("frames", [False, True], ids=["lines", "frames"])
    def test_cut_reset_and_stalled_links_lose_and_double_nothing(
        self, tmp_path: Path, start_method: str, frames: bool
    ) -> None:
        """8 producers behind a proxy that cuts, resets and stalls their connections at random
        byte counts: every record arrives once, in each producer's order, whether records
        travel as lines or as numbered frames."""
        path, done, stats = run_through_proxy(
            tmp_path, start_method, faults=24, seed=7, frames=frames
        )
        # The faults really happened (a planned one may fall after its connection's end).
        assert min(done.values()) >= 1, done
        assert sum(done.values()) >= 12, done
        result = audit([path])
        assert not result.torn
        assert result.missing(WORKERS, RECORDS) == []
        assert result.doubled() == {}
        assert not result.reordered
        assert stats.missing_records == 0

    @pytest.mark.stress
    @pytest.mark.parametrize("seed", range(5))
    def test_many_more_faults(self, tmp_path: Path, seed: int) -> None:
        """The same with 10,000 records each and 120 faults, over several seeds."""
        path, done, _ = run_through_proxy(
            tmp_path, "spawn", faults=120, seed=seed, records=10_000, cut_after=(500, 40_000)
        )
        assert sum(done.values()) >= 100, done
        result = audit([path])
        assert result.missing(WORKERS, 10_000) == []
        assert result.doubled() == {}
        assert not result.reordered
        assert not result.torn


# -- the acknowledgement protocol, with raw peers ------------------------------------


def _hello(stream: int = 1, seq: int = 0) -> dict[str, Any]:
    return {"host": "h", "pid": 77, "start": 1.0, "seq": seq, "stream": stream, "ack": True}


def _producer(
    address: Any, hello: dict[str, Any]
) -> tuple[socket.socket, socket.socket, dict[str, Any]]:
    """A raw acknowledging producer: its records connection, its acknowledgement channel,
    and the collector's answer."""
    sock, config = client_handshake(address, hello, 10)
    return sock, open_ack_channel(address, config["channel"], 10), config


def _read_acks(sock: socket.socket, reader: AckReader, until: int) -> None:
    """Read acknowledgements until ``until`` is acknowledged."""
    sock.settimeout(JOIN_TIMEOUT)
    while reader.acked < until:
        data = sock.recv(65536)
        assert data, "the collector closed the connection"
        reader.feed(data)


def _text_frame(seq: int) -> bytes:
    return b"\0" + encode_text(logging.WARNING, seq, [f"record {seq}\n"])


def _record(seq: int) -> bytes:
    record = logging.LogRecord("worker", logging.WARNING, __file__, 1, f"record {seq}", None, None)
    return encode_record(record, seq)


class TestAcknowledgementProtocol:
    def test_written_records_are_acknowledged_and_a_replay_is_not_written_again(
        self, tmp_path: Path
    ) -> None:
        """Records are acknowledged once written; numbers sent again (a replay, or a resend
        the collector had already) are skipped, on the line-mode fast path and for records."""
        capture = Records()
        path = tmp_path / "lines.log"
        file_sink = logging.FileHandler(path)
        for sinks, frame in (([file_sink], _text_frame), ([capture], _record)):
            with serve(sinks, "tcp://127.0.0.1:0") as (_, address):
                sock, acks, config = _producer(address, _hello())
                assert (config["ack"], config["resume"]) == (True, 0)
                reader = AckReader(0)
                for seq in (0, 1, 2, 1, 2, 3):
                    sock.sendall(frame(seq))
                _read_acks(acks, reader, 4)
                assert reader.acked == 4
                sock.close()
                acks.close()
        file_sink.close()
        assert path.read_text().splitlines() == [f"record {n}" for n in range(4)]
        assert capture.messages() == [f"record {n}" for n in range(4)]

    def test_nothing_comes_back_on_the_records_connection(self) -> None:
        """Acknowledgements travel on their own channel: a producer killed with unread bytes
        would make the kernel reset its connection and throw away records still queued."""
        with serve([Records()], "tcp://127.0.0.1:0") as (_, address):
            sock, acks, _ = _producer(address, _hello())
            for seq in range(3):
                sock.sendall(_record(seq))
            _read_acks(acks, AckReader(0), 3)
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
            sock.close()
            acks.close()

    def test_a_new_connection_of_a_stream_takes_over_where_the_old_one_stands(self) -> None:
        """A stream that reconnects while its old connection still looks alive (a link that
        dropped without a word): the old one is closed, and the new one resumes after the
        records already written, whatever number it announces."""
        capture = Records()
        with serve([capture], "tcp://127.0.0.1:0") as (_, address):
            old, old_acks, _ = _producer(address, _hello())
            for seq in range(5):
                old.sendall(_record(seq))
            _read_acks(old_acks, AckReader(0), 5)
            new, new_acks, config = _producer(address, _hello(seq=2))
            assert config["resume"] == 5
            assert closed_by_peer(old)
            assert closed_by_peer(old_acks)
            new.sendall(_record(5))
            _read_acks(new_acks, AckReader(5), 6)
            new.close()
            new_acks.close()
        assert capture.messages() == [f"record {n}" for n in range(6)]

    def test_another_stream_of_the_same_process_is_its_own(self) -> None:
        """Two handler streams of one process each resume at their own count."""
        with serve([Records()], "tcp://127.0.0.1:0") as (_, address):
            first, first_acks, _ = _producer(address, _hello(stream=1))
            for seq in range(3):
                first.sendall(_record(seq))
            _read_acks(first_acks, AckReader(0), 3)
            second, second_acks, config = _producer(address, _hello(stream=2))
            assert config["resume"] == 0
            for sock in (first, first_acks, second, second_acks):
                sock.close()

    def test_an_unknown_acknowledgement_channel_is_refused(self) -> None:
        """A channel hello with a token no connection was given closes that connection."""
        capture = Records()
        with serve([capture], "tcp://127.0.0.1:0") as (collector, address):
            with pytest.raises(logfunnel.AttachError):
                open_ack_channel(address, "not-a-token", 10)
            stats = collector.stats
        assert stats.bad_connections == 1
        assert "acknowledgement channel for no known connection" in capture.messages("logfunnel")[0]


class TestProducerSide:
    def test_an_acknowledgement_of_records_never_sent_drops_that_connection(self) -> None:
        """A collector that acknowledges more than was sent is not believed: the producer
        drops that connection and connects again, keeping its records."""
        key = os.urandom(16)
        server = socket.create_server(("127.0.0.1", 0))
        port = server.getsockname()[1]
        hellos: list[dict[str, Any]] = []
        answered = threading.Event()

        def accept() -> tuple[socket.socket, dict[str, Any]]:
            conn, _ = server.accept()
            conn.settimeout(JOIN_TIMEOUT)
            nonce = os.urandom(32)
            conn.sendall(challenge_frame(nonce))
            length, kind = HEADER.unpack(recv_exact(conn, HEADER.size))
            conn.sendall(check_auth(kind, recv_exact(conn, length - 1), key, nonce))
            length, _ = HEADER.unpack(recv_exact(conn, HEADER.size))
            return conn, decode_json(recv_exact(conn, length - 1))

        resent = threading.Event()

        def fake_collector() -> None:
            for round_ in range(2):
                conn, hello = accept()
                hellos.append(hello)
                conn.sendall(config_frame({"level": 0, "ack": True, "resume": 0, "channel": "t"}))
                channel, _ = accept()
                channel.sendall(config_frame({"ack": True}))
                if round_ == 0:
                    channel.sendall(ack_frame(1000))  # nothing was sent yet
                    answered.set()
                    assert closed_by_peer(conn)
                else:
                    recv_exact(conn, HEADER.size)  # the record, sent again
                    resent.set()
                conn.close()
                channel.close()

        thread = threading.Thread(target=fake_collector, daemon=True)
        thread.start()
        handler = logfunnel.FunnelHandler(f"tcp://127.0.0.1:{port}?key={key.hex()}")
        try:
            handler.connect()
            assert answered.wait(JOIN_TIMEOUT)
            channel = handler._ack_sock
            assert channel is not None
            assert select.select([channel], [], [], JOIN_TIMEOUT)[0]  # the bogus one is here
            handler.handle(logging.makeLogRecord({"msg": "kept", "levelno": logging.INFO}))
            assert resent.wait(JOIN_TIMEOUT)
            thread.join(JOIN_TIMEOUT)
            assert not thread.is_alive()
        finally:
            handler._resend = None  # nothing will acknowledge: do not wait at close
            handler.close()
            server.close()
        assert [hello["seq"] for hello in hellos] == [0, 0]  # it resends from record 0


class TestTheWindowsPath:
    def test_the_transport_switch_makes_loopback_tcp_the_default(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """LOGFUNNEL_TRANSPORT=tcp makes a funnel listen on loopback TCP with a fresh key,
        as on Windows, and its children attach there."""
        monkeypatch.setenv("LOGFUNNEL_TRANSPORT", "tcp")
        path = tmp_path / "win.log"
        with logfunnel.Funnel(path, level="INFO") as funnel:
            address = parse_address(funnel.address)
            assert (address.scheme, address.host) == ("tcp", "127.0.0.1")
            assert address.key is not None
            ctx = funnel.context("spawn")
            procs = [ctx.Process(target=attach_and_log, args=(funnel.address, 0, 50))]
            procs[0].start()
            join_all(procs, exitcode=0)
        result = audit([path])
        assert result.missing(1, 50) == []
        assert result.doubled() == {}

    def test_a_bad_transport_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Any other value of LOGFUNNEL_TRANSPORT is an error that names it."""
        monkeypatch.setenv("LOGFUNNEL_TRANSPORT", "pigeon")
        with pytest.raises(ValueError, match="pigeon"):
            logfunnel.Funnel(attach_main=False).start()


_NEVER_BACK = """
import logging, sys
import logfunnel
from logfunnel._producer import _handler

_handler._ROOM_PATIENCE = 1.0  # 30 s in use: shortened, the mechanism is the same
logfunnel.attach(sys.argv[1])
log = logging.getLogger("p")
log.warning("before")
print("ready", flush=True)
sys.stdin.readline()
for number in range(int(sys.argv[2])):
    log.warning("n%d %s", number, "x" * 1000)
print("logged", flush=True)
"""


class TestACollectorThatNeverComesBack:
    @pytest.mark.parametrize("overflow", ["block", "drop"])
    def test_the_resend_buffer_fills_then_the_overflow_policy_decides(self, overflow: str) -> None:
        """A producer whose collector goes away for good (no bye: it may come back) keeps
        5,000 records of 1 KiB: its 4 MiB resend buffer fills, then under "block" the next
        record waits its patience once and it and every later one go to stderr at once,
        and under "drop" the rest are dropped and counted. At exit the kept records are
        written to stderr too, and the counts are said: every record is accounted for, and
        the process ends within seconds, not a patience per record."""
        count = 5_000
        sink = Records()
        funnel = logfunnel.Funnel(
            handlers=[sink],
            listen="tcp://127.0.0.1:0",
            final=False,
            overflow=overflow,
            inherit=False,
            attach_main=False,
        ).start()
        proc = subprocess.Popen(
            [sys.executable, "-c", _NEVER_BACK, funnel.address, str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n"
            assert sink.wait_for("before")
            funnel.stop()
            started = time.monotonic()
            out, err = proc.communicate("go\n", timeout=JOIN_TIMEOUT * 2)
            took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err[-2000:]
        assert out == "logged\n"
        on_stderr = [
            int(n) for n in re.findall(r"WARNING p: n(\d+) x+ \[logfunnel: collector", err)
        ]
        assert len(on_stderr) == len(set(on_stderr)), "a record written twice"
        kept = re.search(r"(\d+) record\(s\) sent to \S+ were never acknowledged", err)
        assert kept is not None, err[-2000:]
        if overflow == "block":
            assert sorted(on_stderr) == list(range(count))
            assert f"{count} record(s) could not be sent" in err
        else:
            dropped = re.search(r"(\d+) record\(s\) were dropped \(overflow='drop'\)", err)
            assert dropped is not None, err[-2000:]
            assert len(on_stderr) == int(kept[1])  # what was kept; the rest was dropped
            assert int(kept[1]) + int(dropped[1]) == count
            assert int(dropped[1]) > 0
        assert 0 < int(kept[1]) < count
        assert took < 30, f"the producer took {took:.1f} s"
