"""`logfunnel serve`: a standalone collector process, its key file, its drain and restarts.

Every serve is a real process (``python -m logfunnel serve``); a test waits for the
line it prints on stdout before it uses the address, and for process exits. Producers
are spawn processes that ``attach()`` with the address and the key.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import selectors
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _serve_workers import attach_and_log, own_levels
from _strategy_workers import RECORD
from _support import JOIN_TIMEOUT, audit, join_all

import logfunnel

SERVE = [sys.executable, "-m", "logfunnel", "serve"]
LISTENING = "logfunnel serve: listening on "

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def serve_refused(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``logfunnel serve`` with ``args``, run to its end: for what it must refuse."""
    return subprocess.run(
        [*SERVE, *args],
        cwd=cwd,
        check=False,
        capture_output=True,
        text=True,
        timeout=JOIN_TIMEOUT,
    )


class Serve:
    """One ``logfunnel serve`` process; ``address`` is what it printed, ``said`` its stdout."""

    #: The command line before serve's arguments (a subclass may run it elsewhere).
    command: tuple[str, ...] = tuple(SERVE)

    def __init__(self, cwd: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*self.command, *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        self._pending = b""
        self.said: list[str] = []
        while not self.said or not self.said[-1].startswith(LISTENING):
            self.said.append(self._read_line())
        self.address = self.said[-1][len(LISTENING) :]

    def _read_line(self) -> str:
        """The next line serve prints; a failure if none comes within ``JOIN_TIMEOUT``."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + JOIN_TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._pending:
                assert selector.select(deadline - time.monotonic()), "serve said nothing"
                data = os.read(fd, 4096)
                assert data, f"serve ended ({self.proc.wait(JOIN_TIMEOUT)}): {self.said}"
                self._pending += data
        line, self._pending = self._pending.split(b"\n", 1)
        return line.decode()

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str, str]:
        """Send ``signum``; its exit status and all its stdout, and its stderr."""
        self.proc.send_signal(signum)
        out, err = self.proc.communicate(timeout=JOIN_TIMEOUT)
        said = "\n".join(self.said) + "\n" + (self._pending + out).decode()
        return self.proc.returncode, said, err.decode()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.communicate(timeout=JOIN_TIMEOUT)


def key_file(folder: Path, key: bytes = bytes(range(32))) -> Path:
    path = folder / "test.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex() + "\n")
    return path


def producers(address: str, counts: list[int], pace: float = 0.0) -> list[multiprocessing.Process]:
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=attach_and_log, args=(address, worker, count, pace))
        for worker, count in enumerate(counts)
    ]
    for proc in procs:
        proc.start()
    return procs


def numbers(log: Path) -> dict[int, list[int]]:
    """Each worker's record numbers, in the order the log has them."""
    seen: dict[int, list[int]] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        found = RECORD.search(line)
        if found:
            seen.setdefault(int(found["worker"]), []).append(int(found["number"]))
    return seen


def wait_for_records(log: Path, at_least: int) -> None:
    """Poll ``log`` (a file, with nothing to wait on) until it holds ``at_least`` records."""
    deadline = time.monotonic() + JOIN_TIMEOUT
    while sum(map(len, numbers(log).values())) < at_least if log.exists() else True:
        assert time.monotonic() < deadline, f"{log} did not reach {at_least} records"
        time.sleep(0.02)


class TestServing:
    def test_records_of_several_producers_land_once_in_order_and_sigterm_drains(
        self, tmp_path: Path, serves: list[Serve]
    ) -> None:
        """Three producers' records are in the -o file once each, in each producer's
        order; the log says when serve started and stopped, and names a peer it refused;
        SIGTERM drains and serve exits 0. The key is printed nowhere."""
        key = key_file(tmp_path)
        log = tmp_path / "cluster.log"
        serve = Serve(tmp_path, "tcp://127.0.0.1:0", "--key-file", str(key), "-o", str(log))
        serves.append(serve)
        with socket.create_connection(serve.address[len("tcp://") :].rsplit(":", 1)) as peer:
            peer.sendall(b"GET / HTTP/1.0\r\n\r\n" * 100)
            with contextlib.suppress(OSError):
                peer.recv(1 << 16)  # the collector closes it
        join_all(producers(f"{serve.address}?key={key.read_text().strip()}", [300] * 3), 0)
        code, out, err = serve.stop()
        assert code == 0, err
        found = audit([log])
        assert (found.missing(3, 300), found.duplicated, found.reordered.count) == ([], 0, 0)
        assert found.torn.count == 0, found.torn.lines
        text = log.read_text(encoding="utf-8")
        assert f"logfunnel serve: listening on {serve.address}" in text
        assert "logfunnel serve: SIGTERM: draining and stopping" in text
        assert "logfunnel: closed" in text  # the peer it refused
        assert key.read_text().strip() not in out + err + text

    def test_sigint_drains_too(self, tmp_path: Path, serves: list[Serve]) -> None:
        """SIGINT (Ctrl-C) drains as SIGTERM does and exits 0, the stop in the log."""
        log = tmp_path / "cluster.log"
        serve = Serve(
            tmp_path, "tcp://127.0.0.1:0", "--key-file", str(key_file(tmp_path)), "-o", str(log)
        )
        serves.append(serve)
        code, _, err = serve.stop(signal.SIGINT)
        assert code == 0, err
        assert "logfunnel serve: SIGINT: draining and stopping" in log.read_text()


class TestRestart:
    def test_killed_and_restarted_serves_lose_nothing(
        self, tmp_path: Path, serves: list[Serve]
    ) -> None:
        """4 producers keep logging numbered records while their serve is stopped by
        SIGTERM and started again, then SIGKILLed and started again, on the same address
        with the same key: every record is in the log; a record is written twice only in
        one window of each producer, where the killed serve had written records it had not
        acknowledged yet, and apart from that window each producer's order is kept."""
        key = key_file(tmp_path)
        log = tmp_path / "cluster.log"
        args = ["--key-file", str(key), "-o", str(log)]
        first = Serve(tmp_path, "tcp://127.0.0.1:0", *args)
        serves.append(first)
        counts = [600] * 4
        procs = producers(f"{first.address}?key={key.read_text().strip()}", counts, pace=0.004)
        wait_for_records(log, 400)
        code, _, err = first.stop()
        assert code == 0, err
        second = Serve(tmp_path, first.address, *args)
        serves.append(second)
        wait_for_records(log, 1200)
        second.kill()
        third = Serve(tmp_path, first.address, *args)
        serves.append(third)
        join_all(procs, 0)
        code, _, err = third.stop()
        assert code == 0, err

        doubled = 0
        for worker, seq in numbers(log).items():
            # The log holds 0..a-1, then b..count-1: [b, a) is the window written twice.
            cut = next((i for i in range(1, len(seq)) if seq[i] <= seq[i - 1]), len(seq))
            head, tail = seq[:cut], seq[cut:]
            assert head == list(range(len(head))), f"worker {worker}: {head[:5]}..."
            start = tail[0] if tail else len(head)
            assert tail == list(range(start, counts[worker])), f"worker {worker}"
            doubled += len(head) - start
        assert sorted(numbers(log)) == [0, 1, 2, 3]
        found = audit([log])
        assert found.missing(4, 600) == []
        assert found.torn.count == 0
        assert found.duplicated == doubled
        print(f"records written twice after the SIGKILL: {doubled}")
        assert doubled <= 4 * 100, "more than one acknowledgement window doubled"


class TestKeyFile:
    def test_a_new_key_file_is_private_and_the_key_never_printed(
        self, tmp_path: Path, serves: list[Serve]
    ) -> None:
        """Without --key-file serve writes a new key to ./logfunnel.key with mode 0600 and
        prints its path, never the key; a second serve does not overwrite it (exit 2); a
        --key-file that does not exist yet is created likewise and its key is used."""
        serve = Serve(tmp_path, "tcp://127.0.0.1:0")
        serves.append(serve)
        path = tmp_path / "logfunnel.key"
        key = path.read_text().strip()
        code, out, err = serve.stop()
        assert code == 0
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert len(bytes.fromhex(key)) == 32
        assert str(path) in out
        assert key not in out + err

        again = serve_refused("tcp://127.0.0.1:0", cwd=tmp_path)
        assert again.returncode == 2
        assert "exists" in again.stderr
        assert path.read_text().strip() == key

        named = tmp_path / "new.key"
        serve = Serve(
            tmp_path, "tcp://127.0.0.1:0", "--key-file", str(named), "-o", str(tmp_path / "log")
        )
        serves.append(serve)
        assert stat.S_IMODE(named.stat().st_mode) == 0o600
        join_all(producers(f"{serve.address}?key={named.read_text().strip()}", [5]), 0)
        code, out, err = serve.stop()
        assert code == 0
        assert named.read_text().strip() not in out + err
        assert audit([tmp_path / "log"]).missing(1, 5) == []

    @pytest.mark.parametrize(
        ("content", "mode", "message"),
        [
            ("00" * 32, 0o644, "chmod 600"),
            ("00" * 32, 0o640, "chmod 600"),
            ("not a key", 0o600, "does not hold a key in hex"),
            ("", 0o600, "does not hold a key in hex"),
            (None, 0o700, "cannot read the key file"),
        ],
        ids=["world-readable", "group-readable", "not-hex", "empty", "a-directory"],
    )
    def test_a_bad_key_file_is_refused(
        self, tmp_path: Path, content: str | None, mode: int, message: str
    ) -> None:
        """A key file readable by group or others (as ssh refuses a private key), not hex,
        empty, or unreadable: a clear message and exit 2, and serve does not listen."""
        path = tmp_path / "bad.key"
        if content is None:
            path.mkdir()
        else:
            path.write_text(content)
        path.chmod(mode)
        done = serve_refused("tcp://127.0.0.1:0", "--key-file", str(path))
        assert done.returncode == 2
        assert message in done.stderr
        assert LISTENING not in done.stdout


class TestBadInput:
    @pytest.mark.parametrize(
        ("address", "message"),
        [
            (None, "no ADDRESS"),
            ("tcp://127.0.0.1", "must look like tcp://HOST:PORT"),
            ("tcp://127.0.0.1:port", "must look like tcp://HOST:PORT"),
            ("127.0.0.1:9020", "give tcp://HOST:PORT"),
            ("unix:/tmp/x.sock", "give tcp://HOST:PORT"),
            ("tls://127.0.0.1:9020", "--tls-cert"),
            ("tcp://127.0.0.1:0?key=00", "--key-file"),
        ],
        ids=["none", "no-port", "bad-port", "no-scheme", "unix", "tls", "key-in-address"],
    )
    def test_a_bad_address_is_refused(
        self, tmp_path: Path, address: str | None, message: str
    ) -> None:
        """No address, a malformed one, another scheme, TLS without a certificate or a key in
        the address: a clear message on stderr, exit 2, and no key file is made."""
        done = serve_refused(*([address] if address else []), cwd=tmp_path)
        assert done.returncode == 2
        assert message in done.stderr
        assert not (tmp_path / "logfunnel.key").exists()

    def test_a_port_in_use_is_refused(self, tmp_path: Path) -> None:
        """A port another socket listens on: a message naming the address, exit 2."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            done = serve_refused(f"tcp://127.0.0.1:{port}", "--key-file", str(key_file(tmp_path)))
        assert done.returncode == 2
        assert f"cannot listen on tcp://127.0.0.1:{port}" in done.stderr


class TestProducersKeepTheirLevels:
    @pytest.mark.parametrize("mirror", [False, True], ids=["own", "mirrored"])
    def test_a_standalone_collector_leaves_its_producers_levels_alone(
        self, tmp_path: Path, mirror: bool
    ) -> None:
        """With mirror_loggers=False (serve without --level) a producer keeps its own root
        level and its DEBUG record is sent; mirrored, it takes the collector's WARNING."""
        path = tmp_path / "levels.log"
        logging.getLogger().setLevel(logging.WARNING)
        ctx = multiprocessing.get_context("spawn")
        done = ctx.Queue()
        with logfunnel.Funnel(
            path,
            listen="tcp://127.0.0.1:0",
            inherit=False,
            attach_main=False,
            mirror_loggers=mirror,
        ) as funnel:
            proc = ctx.Process(target=own_levels, args=(funnel.address, done))
            proc.start()
            join_all([proc], exitcode=0)
            level = done.get(timeout=JOIN_TIMEOUT)
        text = path.read_text()
        if mirror:
            assert level == logging.WARNING
            assert "debug of its own" not in text
        else:
            assert level == logging.DEBUG
            assert "debug of its own" in text
