"""TLS: ``tls://`` addresses carry records inside TLS, checked certificates and host names,
optional client certificates; every wrong peer is refused with a reason on both sides.

The certificates come from a CA made for this session (``trustme``), another CA that
nobody here trusts, and certificates for another host name.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _link_workers import attach_and_log
from _support import JOIN_TIMEOUT, Records, audit, join_all
from _tls_workers import flood_noting_drops
from test_backpressure import Gate, flood_while_held
from test_links import run_through_proxy
from test_serve import LISTENING, Serve, producers, serve_refused

import logfunnel
from logfunnel._collector._listen import listen
from logfunnel._collector._loop import Collector
from logfunnel._collector._tls import TLSFiles, server_context
from logfunnel._producer._connect import client_handshake, open_ack_channel
from logfunnel._producer._tls import client_context
from logfunnel._protocol._acks import AckReader
from logfunnel._protocol._address import Address, parse_address
from logfunnel._protocol._codec import encode_record

trustme = pytest.importorskip("trustme")

WORKERS = 4
RECORDS = 300


@dataclass
class PKI:
    """Certificate files: ``ca`` signed ``server`` (127.0.0.1, localhost) and ``client``;
    ``other_ca`` signed ``other_client``; ``elsewhere`` names another host only."""

    ca: str
    server: str
    client: str
    other_ca: str
    other_client: str
    elsewhere: str


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    folder = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()

    def write(name: str, blob: Any) -> str:
        path = folder / name
        blob.write_to_path(str(path))
        return str(path)

    return PKI(
        ca=write("ca.pem", ca.cert_pem),
        server=write(
            "server.pem", ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem
        ),
        client=write(
            "client.pem", ca.issue_cert("producer.example").private_key_and_cert_chain_pem
        ),
        other_ca=write("other-ca.pem", other.cert_pem),
        other_client=write(
            "other-client.pem", other.issue_cert("producer.example").private_key_and_cert_chain_pem
        ),
        elsewhere=write(
            "elsewhere.pem", ca.issue_cert("elsewhere.example").private_key_and_cert_chain_pem
        ),
    )


@contextlib.contextmanager
def collector(
    files: TLSFiles | None,
    key: bytes | None = None,
    sinks: list[logging.Handler] | None = None,
    handshake_timeout: float = 10.0,
) -> Iterator[tuple[Collector, Address, Records]]:
    """A started collector on loopback: ``tls://`` with ``files``, else plain ``tcp://``."""
    spec = "tls://127.0.0.1:0" if files is not None else "tcp://127.0.0.1:0"
    sock, address, _ = listen(spec, key, files)
    records = Records()
    context = None if files is None else server_context(files)
    running = Collector(
        sock,
        address,
        [records, *(sinks or [])],
        0,
        tls=context,
        handshake_timeout=handshake_timeout,
    )
    running.start()
    try:
        yield running, address, records
    finally:
        running.stop(30)


def log_through(address: str, tls: Any, messages: list[str], timeout: float = 10.0) -> None:
    """A producer in this process: connect, send ``messages``, wait for their acknowledgement."""
    handler = logfunnel.FunnelHandler(address, tls=tls, timeout=timeout)
    try:
        handler.connect()
        for message in messages:
            handler.handle(logging.makeLogRecord({"name": "worker", "msg": message, "levelno": 30}))
    finally:
        handler.close()
    assert handler.fallbacks == 0


def refusals(records: Records, count: int = 1) -> list[str]:
    """The collector's records of closed peers, once ``count`` of them are there."""
    with records.changed:
        assert records.changed.wait_for(
            lambda: len([m for m in records.own() if "closed" in m]) >= count, JOIN_TIMEOUT
        )
    return [m for m in records.own() if "closed" in m]


class TestDelivery:
    def test_records_arrive_once_and_in_order(
        self, tmp_path: Path, start_method: str, pki: PKI
    ) -> None:
        """Producers of a funnel listening on tls:// with a key deliver every record once, in
        each producer's order, under every start method; the children find the CA the funnel
        was given without being told, also from a forkserver started before the funnel."""
        path = tmp_path / "tls.log"
        if start_method == "forkserver":
            # Its environment then predates the funnel: the CA must travel with each child.
            multiprocessing.forkserver.ensure_running()
        with logfunnel.Funnel(
            path,
            listen="tls://127.0.0.1:0",
            key=os.urandom(32),
            tls_cert=pki.server,
            tls_ca=pki.ca,
            level="INFO",
        ) as funnel:
            assert parse_address(funnel.address).scheme == "tls"
            assert os.environ[logfunnel.ENV_TLS_CA] == pki.ca
            ctx = funnel.context(start_method)
            procs = [
                ctx.Process(target=attach_and_log, args=(funnel.address, worker, RECORDS))
                for worker in range(WORKERS)
            ]
            for proc in procs:
                proc.start()
            join_all(procs, exitcode=0)
            stats = funnel.stats
        assert logfunnel.ENV_TLS_CA not in os.environ
        result = audit([path])
        assert result.missing(WORKERS, RECORDS) == []
        assert result.doubled() == {}
        assert not result.reordered
        assert not result.torn
        assert (stats.bad_connections, stats.missing_records) == (0, 0)

    def test_a_subprocess_joins_with_no_code(self, pki: PKI) -> None:
        """A TLS funnel exports what its children need (address, key, CA file): a Python
        subprocess that only logs is attached by the startup hook, over TLS."""
        sink = Records()
        with logfunnel.Funnel(
            handlers=[sink],
            listen="tls://127.0.0.1:0",
            key=os.urandom(32),
            tls_cert=pki.server,
            tls_ca=pki.ca,
        ):
            code = "import logging; logging.getLogger('worker').warning('from a subprocess')"
            subprocess.run([sys.executable, "-c", code], check=True, timeout=JOIN_TIMEOUT)
        assert sink.messages() == ["from a subprocess"]

    def test_a_collector_process_serves_tls_too(
        self, tmp_path: Path, pki: PKI, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """collector="process" builds its own TLS context from the files and serves a spawn
        child under mutual TLS without a key."""
        path = tmp_path / "process.log"
        monkeypatch.setenv(logfunnel.ENV_TLS_CERT, pki.client)
        if True:
            with logfunnel.Funnel(
                path,
                listen="tls://127.0.0.1:0",
                collector="process",
                tls_cert=pki.server,
                tls_client_ca=pki.ca,
                tls_ca=pki.ca,
                level="INFO",
            ) as funnel:
                assert parse_address(funnel.address).key is None
                ctx = funnel.context("spawn")
                procs = [ctx.Process(target=attach_and_log, args=(funnel.address, 0, 50))]
                procs[0].start()
                join_all(procs, exitcode=0)
        assert audit([path]).missing(1, 50) == []

    @pytest.mark.parametrize("final", [True, False], ids=["final", "not-final"])
    def test_a_stop_with_producers_connected_writes_what_they_sent(
        self, tmp_path: Path, pki: PKI, final: bool, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """A TLS funnel that stops while a producer is still connected reads its TLS stream
        to the end: every record sent is written once, nothing is reported as bad; after a
        final stop the next record goes to the producer's stderr fallback (at the latest
        when the handler closes: acknowledgements, and so the bye, are read every few
        records)."""
        path = tmp_path / "stop.log"
        funnel = logfunnel.Funnel(
            handlers=[Records(), logging.FileHandler(path)],
            listen="tls://127.0.0.1:0",
            key=os.urandom(32),
            tls_cert=pki.server,
            attach_main=False,
            final=final,
        ).start()
        handler = logfunnel.FunnelHandler(funnel.address, tls=client_context(ca=pki.ca))
        logger = logging.getLogger("tls.stop")
        logger.addHandler(handler)
        logger.propagate = False
        try:
            for number in range(500):
                logger.warning("before stop %d", number)
            funnel.stop()
            if final:
                logger.warning("after stop")
        finally:
            logger.removeHandler(handler)
            logger.propagate = True
            if not final:
                handler._resend = None  # a collector that is not final never answers again
            handler.close()
        if final:
            assert handler.fallbacks == 1
        sink = funnel.sinks[0]
        assert isinstance(sink, Records)
        assert sink.messages("tls.stop") == [f"before stop {n}" for n in range(500)]
        assert sink.own(logging.WARNING) == []
        assert funnel.stats.bad_connections == 0
        if final:
            err = capfd.readouterr().err
            assert "after stop [logfunnel: collector unreachable]" in err, err

    def test_the_drop_policy_never_blocks_over_tls(self, pki: PKI) -> None:
        """With overflow="drop" over TLS, producers never wait on a stuck collector (a TLS
        socket takes no MSG_DONTWAIT): drops are counted and reach the sinks as a count,
        and exactly the records that were not dropped arrive, in order (a frame TLS took
        in part is finished, not taken for dropped)."""
        gate = Gate()
        count = 20_000
        with logfunnel.Funnel(
            handlers=[gate],
            overflow="drop",
            level=logging.INFO,
            listen="tls://127.0.0.1:0",
            key=os.urandom(32),
            tls_cert=pki.server,
            tls_ca=pki.ca,
        ) as funnel:
            dropped = flood_while_held(funnel, gate, "fork", flood_noting_drops, count)
            stats = funnel.stats
        assert all(dropped), dropped
        arrived = [r for r in gate.records if r.name == "worker" and r.getMessage() != "hold"]
        counted = sum(getattr(r, "logfunnel_dropped", 0) for r in gate.records)
        assert counted == sum(map(len, dropped))
        assert stats.sink_dropped == 0
        pids = sorted({r.process for r in arrived})
        assert len(pids) == 2
        numbers = [
            [int(r.getMessage().split()[1][1:]) for r in arrived if r.process == pid]
            for pid in pids
        ]
        # Which list of drops is whose: the one that leaves out none of what arrived.
        for got in numbers:
            assert any(set(got).isdisjoint(d) and len(got) + len(d) == count for d in dropped)
            assert got == sorted(got)
        # No connection broke and was made again: two for each producer and for this one.
        assert (stats.connections, stats.bad_connections, stats.partial_frames) == (6, 0, 0)


class TestMutualTLS:
    def test_the_right_client_certificate_gets_in_and_others_are_refused(self, pki: PKI) -> None:
        """With a client CA and no key, a producer with a certificate that CA signed delivers;
        one without a certificate, and one with another CA's, get an AttachError that says
        their certificate was refused, and the collector records why for each and goes on
        serving."""
        files = TLSFiles(pki.server, client_ca=pki.ca)
        with collector(files) as (_, address, records):
            where = str(address)
            with pytest.raises(logfunnel.AttachError, match="client certificate"):
                log_through(where, client_context(ca=pki.ca), ["none"])
            with pytest.raises(logfunnel.AttachError, match="client certificate"):
                log_through(where, client_context(ca=pki.ca, cert=pki.other_client), ["other"])
            log_through(where, client_context(ca=pki.ca, cert=pki.client), ["in 1", "in 2"])
            said = refusals(records, 2)
        assert records.messages() == ["in 1", "in 2"]
        assert any("sent no client certificate" in m for m in said), said
        assert any("client certificate failed verification" in m for m in said), said

    def test_key_and_client_certificate_are_both_asked_when_both_are_set(self, pki: PKI) -> None:
        """With a key and a client CA, a producer needs both: the right certificate without
        the key is refused, with a message that asks for the key."""
        key = os.urandom(32)
        files = TLSFiles(pki.server, client_ca=pki.ca)
        with collector(files, key=key) as (_, address, records):
            context = client_context(ca=pki.ca, cert=pki.client)
            with pytest.raises(logfunnel.AttachError, match="asks for a key"):
                log_through(str(address), context, ["no key"])
            log_through(f"{address}?key={key.hex()}", context, ["both"])
        assert records.messages() == ["both"]


class TestRefusedCollectors:
    def test_a_collector_signed_by_another_ca_is_refused(self, pki: PKI) -> None:
        """A producer that trusts another CA refuses the collector: its AttachError names
        certificate verification, and the collector records that the peer does not trust
        its certificate."""
        key = os.urandom(32)
        with collector(TLSFiles(pki.server), key=key) as (_, address, records):
            where = f"{address}?key={key.hex()}"
            with pytest.raises(logfunnel.AttachError, match="certificate verification failed"):
                log_through(where, client_context(ca=pki.other_ca), ["x"])
            said = refusals(records)
            log_through(where, client_context(ca=pki.ca), ["after"])
        assert "does not trust this collector's certificate" in said[0]
        assert records.messages() == ["after"]

    def test_a_certificate_for_another_host_is_refused(self, pki: PKI) -> None:
        """The host name is checked: a certificate that names another host gives an
        AttachError that says so."""
        key = os.urandom(32)
        with (
            collector(TLSFiles(pki.elsewhere), key=key) as (_, address, _records),
            pytest.raises(logfunnel.AttachError, match=r"does not name the host '127\.0\.0\.1'"),
        ):
            log_through(f"{address}?key={key.hex()}", client_context(ca=pki.ca), ["x"])

    def test_the_ca_comes_from_the_environment(
        self, pki: PKI, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without a context, a producer takes the CA from LOGFUNNEL_TLS_CA; without that,
        the system's trust store, which does not know this test CA."""
        key = os.urandom(32)
        with collector(TLSFiles(pki.server), key=key) as (_, address, records):
            where = f"{address}?key={key.hex()}"
            monkeypatch.delenv(logfunnel.ENV_TLS_CA, raising=False)
            with pytest.raises(logfunnel.AttachError, match="certificate verification failed"):
                log_through(where, None, ["x"])
            monkeypatch.setenv(logfunnel.ENV_TLS_CA, pki.ca)
            log_through(where, None, ["from env"])
        assert records.messages() == ["from env"]


class TestPlaintextPeers:
    def test_a_plaintext_producer_on_a_tls_listener_is_refused(self, pki: PKI) -> None:
        """A tcp:// producer at a TLS listener gets an AttachError that points at tls://;
        the collector closes it, says it never began TLS, and keeps serving others. A peer
        that sends plain bytes is refused as not speaking TLS."""
        key = os.urandom(32)
        files = TLSFiles(pki.server)
        with collector(files, key=key, handshake_timeout=0.5) as (_, address, records):
            plain = f"tcp://{address.host}:{address.port}?key={key.hex()}"
            with pytest.raises(logfunnel.AttachError, match=r"tls://"):
                log_through(plain, None, ["plain"], timeout=JOIN_TIMEOUT)
            with socket.create_connection((address.host, address.port)) as peer:
                peer.sendall(b"GET / HTTP/1.0\r\n\r\n")
                with contextlib.suppress(OSError):
                    peer.recv(1 << 16)
            said = refusals(records, 2)
            log_through(
                f"tls://127.0.0.1:{address.port}?key={key.hex()}", client_context(ca=pki.ca), ["ok"]
            )
        assert any("no TLS handshake" in m and "plaintext" in m for m in said), said
        assert any("does not speak TLS" in m for m in said), said
        assert records.messages() == ["ok"]

    def test_a_tls_producer_on_a_plain_listener_is_refused(self, pki: PKI) -> None:
        """A tls:// producer at a plain tcp:// listener gets an AttachError that asks whether
        the collector listens on tls://; the collector records a TLS client and keeps serving."""
        key = os.urandom(32)
        with collector(None, key=key) as (_, address, records):
            tls = f"tls://{address.host}:{address.port}?key={key.hex()}"
            with pytest.raises(logfunnel.AttachError, match="listening on tls://"):
                log_through(tls, client_context(ca=pki.ca), ["tls"])
            said = refusals(records)
            log_through(address.with_key(), None, ["plain"])
        assert "it speaks TLS" in said[0]
        assert records.messages() == ["plain"]


class TestListenerChecks:
    def test_a_listener_with_neither_key_nor_client_ca_is_refused(self, pki: PKI) -> None:
        """A TLS funnel with no key and no client CA would let anyone in: ValueError, and
        nothing listens."""
        funnel = logfunnel.Funnel(
            listen="tls://127.0.0.1:0", tls_cert=pki.server, attach_main=False
        )
        with pytest.raises(ValueError, match="anyone"):
            funnel.start()

    def test_bad_tls_arguments_are_refused(self, pki: PKI, tmp_path: Path) -> None:
        """A certificate file that is not one, TLS files without a tls:// address, and a
        tls:// address without a certificate: each a ValueError naming the problem."""
        bad = tmp_path / "bad.pem"
        bad.write_text("not a certificate")
        with pytest.raises(ValueError, match="cannot load the TLS certificate"):
            logfunnel.Funnel(listen="tls://127.0.0.1:0", key=b"k", tls_cert=bad).start()
        with pytest.raises(ValueError, match="tls://"):
            logfunnel.Funnel(listen="tcp://127.0.0.1:0", tls_cert=pki.server).start()
        with pytest.raises(ValueError, match="certificate"):
            logfunnel.Funnel(listen="tls://127.0.0.1:0", key=b"k", attach_main=False).start()


class TestReads:
    def test_bytes_tls_decrypted_beyond_a_full_read_are_not_left_behind(self, pki: PKI) -> None:
        """A read that fills the collector's buffer in the middle of a TLS record leaves the
        rest of it decrypted inside TLS, where the selector never sees it: the collector
        takes it in the same read, so the last records of a stream that then goes quiet are
        written and acknowledged at once."""
        key = os.urandom(32)
        entered, release = threading.Event(), threading.Event()

        class Gate(Records):
            """Holds the collector on the first record, while the rest is sent."""

            def emit(self, record: logging.LogRecord) -> None:
                super().emit(record)
                if record.getMessage() == "gate":
                    entered.set()
                    release.wait(JOIN_TIMEOUT)

        def frame(seq: int, message: str) -> bytes:
            record = logging.LogRecord("worker", 30, __file__, 1, message, None, None)
            return encode_record(record, seq)

        sink = Gate()
        sock, address, _ = listen("tls://127.0.0.1:0", key, TLSFiles(pki.server))
        running = Collector(sock, address, [sink], 0, tls=server_context(TLSFiles(pki.server)))
        # A small buffer, so that two TLS records fill it mid-record (the usual one holds
        # 16 records of 16 KiB, and then it takes more bytes to end a read mid-record).
        running._recv_view = memoryview(bytearray(20_000))
        running.start()
        try:
            context = client_context(ca=pki.ca)
            where = parse_address(f"{address}?key={key.hex()}")
            hello = {"host": "h", "pid": 7, "start": 1.0, "seq": 0, "stream": 1, "ack": True}
            records, config = client_handshake(where, hello, 10, tls=context)
            acks = open_ack_channel(where, config["channel"], 10, tls=context)
            records.sendall(frame(0, "gate"))
            assert entered.wait(JOIN_TIMEOUT)
            seq = 1
            for size in (9_000, 15_000):  # each sendall is one TLS record (at most 16 KiB)
                blob = b""
                while len(blob) < size:
                    blob += frame(seq, f"record {seq} " + "x" * 200)
                    seq += 1
                assert len(blob) < 16_384
                records.sendall(blob)
            release.set()
            reader = AckReader(0)
            acks.settimeout(5)
            while reader.acked < seq:
                data = acks.recv(65536)  # TimeoutError: the tail was left behind
                assert data
                reader.feed(data)
            records.close()
            acks.close()
        finally:
            release.set()
            running.stop(30)
        assert len(sink.messages()) == seq


def _links(
    tmp_path: Path, pki: PKI, method: str, faults: int, seed: int, records: int
) -> tuple[Path, dict[str, int]]:
    """``test_links``' proxy run, over TLS; the funnel exports its CA to the producers."""
    path, done, _ = run_through_proxy(
        tmp_path,
        method,
        faults,
        seed,
        records,
        workers=WORKERS,
        listen="tls://127.0.0.1:0",
        inherit=True,
        key=os.urandom(32),
        tls_cert=pki.server,
        tls_ca=pki.ca,
    )
    return path, done


class TestLinkFaults:
    def test_cut_reset_and_stalled_tls_links_lose_and_double_nothing(
        self, tmp_path: Path, pki: PKI
    ) -> None:
        """Through a proxy that cuts, resets and stalls the TLS connections of 4 producers,
        every record arrives once and in order: TLS sessions start afresh and resend."""
        path, done = _links(tmp_path, pki, "spawn", faults=12, seed=3, records=1_000)
        assert sum(done.values()) >= 6, done
        result = audit([path])
        assert result.missing(WORKERS, 1_000) == []
        assert result.doubled() == {}
        assert not result.reordered
        assert not result.torn

    @pytest.mark.stress
    @pytest.mark.parametrize("seed", range(3))
    def test_many_more_faults(self, tmp_path: Path, pki: PKI, seed: int) -> None:
        """The same with 5,000 records each and 60 faults, under fork."""
        path, done = _links(tmp_path, pki, "fork", faults=60, seed=seed, records=5_000)
        assert sum(done.values()) >= 40, done
        result = audit([path])
        assert result.missing(WORKERS, 5_000) == []
        assert result.doubled() == {}
        assert not result.reordered


class TestImportCost:
    @pytest.mark.parametrize("scheme", ["unix", "tcp", "tls"])
    def test_only_a_tls_producer_loads_ssl(self, scheme: str, pki: PKI) -> None:
        """A worker attached over a Unix socket or plain TCP never imports ssl; one attached
        over TLS does (the check would pass for nothing otherwise)."""
        options: dict[str, Any] = {
            "listen": f"{scheme}:" if scheme == "unix" else f"{scheme}://127.0.0.1:0"
        }
        if scheme == "tls":
            options.update(key=os.urandom(32), tls_cert=pki.server, tls_ca=pki.ca)
        with logfunnel.Funnel(attach_main=False, inherit=False, **options) as funnel:
            code = (
                "import logfunnel, sys\n"
                f"logfunnel.attach({funnel.address!r})\n"
                "print('ssl' in sys.modules)"
            )
            env = {**os.environ, logfunnel.ENV_TLS_CA: pki.ca}
            out = subprocess.run(
                [sys.executable, "-c", code],
                capture_output=True,
                text=True,
                check=True,
                env=env,
                timeout=JOIN_TIMEOUT,
            ).stdout
        assert out.split() == [str(scheme == "tls")]


class TestServe:
    def test_serve_over_mutual_tls_without_a_key(
        self, tmp_path: Path, pki: PKI, serves: list[Serve], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``logfunnel serve tls://... --tls-client-ca CA --no-key`` makes no key file, takes
        no key from its environment either, says which variables producers set, and takes
        the records of producers that show a client certificate (and have no key), once
        each and in order; SIGTERM drains and exits 0."""
        log = tmp_path / "tls.log"
        monkeypatch.setenv(logfunnel.ENV_KEY, "00" * 32)  # serve inherits it
        serve = Serve(
            tmp_path,
            "tls://127.0.0.1:0",
            "--tls-cert",
            pki.server,
            "--tls-client-ca",
            pki.ca,
            "--no-key",
            "-o",
            str(log),
        )
        serves.append(serve)
        assert serve.address.startswith("tls://127.0.0.1:")
        assert not (tmp_path / "logfunnel.key").exists()
        said = "\n".join(serve.said)
        assert logfunnel.ENV_TLS_CA in said
        assert logfunnel.ENV_TLS_CERT in said
        monkeypatch.delenv(logfunnel.ENV_KEY)
        monkeypatch.setenv(logfunnel.ENV_TLS_CA, pki.ca)
        monkeypatch.setenv(logfunnel.ENV_TLS_CERT, pki.client)
        join_all(producers(serve.address, [200, 200]), 0)
        code, _, err = serve.stop()
        assert code == 0, err
        found = audit([log])
        assert (found.missing(2, 200), found.duplicated, found.reordered.count) == ([], 0, 0)

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["tls://127.0.0.1:0"], "--tls-cert FILE"),
            (["tls://127.0.0.1:0", "--tls-cert", "{server}", "--no-key"], "--no-key needs"),
            (["tcp://127.0.0.1:0", "--tls-cert", "{server}"], "go with a tls://"),
            (["tls://127.0.0.1:0", "--tls-cert", "{missing}"], "no such file"),
            (["tls://127.0.0.1:0", "--tls-cert", "{bad}"], "cannot load the TLS certificate"),
        ],
        ids=["no-cert", "no-key-no-client-ca", "tls-options-on-tcp", "missing-file", "bad-file"],
    )
    def test_bad_tls_options_are_refused(
        self, tmp_path: Path, pki: PKI, args: list[str], message: str
    ) -> None:
        """TLS without a certificate, --no-key without client certificates (anyone could
        connect), TLS options on tcp://, a missing or unreadable certificate: a message on
        stderr, exit 2, nothing listens, and no key file is made for nothing."""
        bad = tmp_path / "bad.pem"
        bad.write_text("not a certificate\n")
        files = {"server": pki.server, "missing": str(tmp_path / "nope.pem"), "bad": str(bad)}
        done = serve_refused(*(arg.format(**files) for arg in args), cwd=tmp_path)
        assert done.returncode == 2
        assert message in done.stderr
        assert LISTENING not in done.stdout
