"""A real network link that goes down: two network namespaces joined by a veth pair.

`logfunnel serve` runs in one namespace, eight producers in the other, and the link
between them is taken down for several seconds mid-run, as a switch port or a cable
would be. Nothing in the path is simulated: the kernel's TCP sees a dead link, the
producers keep logging into their buffers, and when the link comes back every record
must be in the log once, in each producer's order.

Making namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2's ``ip``;
elsewhere the test is skipped and says which is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _support import JOIN_TIMEOUT, audit
from test_serve import Serve, key_file, numbers, wait_for_records

PRODUCERS = Path(__file__).with_name("_netns_producers.py")
#: The veth pair's addresses: the collector's side and the producers' side.
COLLECTOR_IP, PRODUCER_IP = "10.213.77.1", "10.213.77.2"
#: How long the link stays down: longer than TCP's first retransmission timeouts.
OUTAGE = 4.0


def _why_not() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if shutil.which("ip") is None:
        return "iproute2's ip command is not installed"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class Link:
    """Two namespaces, a veth pair between them, and the producers' end to cut."""

    def __init__(self) -> None:
        tag = os.getpid()
        self.collector_ns, self.producer_ns = f"lfc{tag}", f"lfp{tag}"
        self.collector_end, self.producer_end = f"lfc{tag}"[:15], f"lfp{tag}"[:15]
        self.made: list[str] = []

    def make(self) -> None:
        for ns in (self.collector_ns, self.producer_ns):
            _ip("netns", "add", ns)
            self.made.append(ns)
        _ip("link", "add", self.collector_end, "type", "veth", "peer", "name", self.producer_end)
        for ns, end, ip in (
            (self.collector_ns, self.collector_end, COLLECTOR_IP),
            (self.producer_ns, self.producer_end, PRODUCER_IP),
        ):
            _ip("link", "set", end, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{ip}/30", "dev", end)
            _ip("-n", ns, "link", "set", end, "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def set(self, state: str) -> None:
        _ip("-n", self.producer_ns, "link", "set", self.producer_end, state)

    def remove(self) -> None:
        for ns in self.made:  # the veth pair goes with its namespaces
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


@pytest.fixture
def link() -> Iterator[Link]:
    why = _why_not()
    if why is not None:
        pytest.skip(why)
    made = Link()
    try:
        made.make()
    except subprocess.CalledProcessError as error:
        made.remove()
        pytest.skip(f"cannot make network namespaces here: {error.stderr.decode().strip()}")
    yield made
    made.remove()


def _settled(log: Path) -> int:
    """The log's record count once it stopped growing (the same in three reads of the
    file 0.2 s apart): nothing is left to land that crossed the link before it went down."""
    counts: list[int] = []
    deadline = time.monotonic() + OUTAGE
    while len(counts) < 3 or len(set(counts[-3:])) > 1:
        assert time.monotonic() < deadline, f"the log kept growing with the link down: {counts}"
        counts.append(sum(map(len, numbers(log).values())))
        time.sleep(0.2)
    return counts[-1]


def test_a_link_down_for_seconds_loses_and_doubles_nothing(link: Link, tmp_path: Path) -> None:
    """8 producers in one namespace log to a serve in another over a veth link; the link
    goes down for 4 s mid-run (nothing reaches the log meanwhile) and comes back: every
    record is in the log once, in each producer's order, and all producers end well."""

    class NamespacedServe(Serve):
        command = ("ip", "netns", "exec", link.collector_ns, *Serve.command)

    key = key_file(tmp_path)
    log = tmp_path / "cluster.log"
    serve = NamespacedServe(
        tmp_path, f"tcp://{COLLECTOR_IP}:0", "--key-file", str(key), "-o", str(log)
    )
    try:
        workers, count = 8, 1500
        env = {**os.environ, "LOGFUNNEL_KEY": key.read_text().strip()}
        env["PYTHONPATH"] = os.pathsep.join([str(PRODUCERS.parent), env.get("PYTHONPATH", "")])
        producers = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                link.producer_ns,
                sys.executable,
                str(PRODUCERS),
                serve.address,
                str(workers),
                str(count),
                "0.003",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for_records(log, workers * count // 5)
            link.set("down")
            down_at = time.monotonic()
            try:
                during = _settled(log)  # what was in flight when the link went down lands
                time.sleep(max(0.0, down_at + OUTAGE - time.monotonic()))  # the outage itself
                assert sum(map(len, numbers(log).values())) == during, "the link was not down"
            finally:
                link.set("up")
            out, err = producers.communicate(timeout=JOIN_TIMEOUT * 2)
        finally:
            if producers.poll() is None:
                producers.kill()
        assert producers.returncode == 0, (out + err).decode()
        assert during < workers * count, "the producers had finished before the outage"
        code, _, err_text = serve.stop()
        assert code == 0, err_text
    finally:
        if serve.proc.poll() is None:
            serve.kill()
    found = audit([log])
    assert found.missing(workers, count) == []
    assert (found.duplicated, found.reordered.count, found.torn.count) == (0, 0, 0)
    assert (err + err_text.encode()).count(b"could not be sent") == 0
