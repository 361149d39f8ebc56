"""Bounded memory: fast producers and a slow sink, and the opt-in drop policy."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import queue
import re
import socket
import threading
from typing import Any

import _hardening_workers as hw
import pytest
from _support import FORCED_TCP, JOIN_TIMEOUT, Records, join_all

import logfunnel
from logfunnel._collector import _loop
from logfunnel._sinks import _guard

#: The bound this test states: the collector's resident memory grows by less
#: than this from before the flood to its end, whatever the number of records.
COLLECTOR_CEILING_KIB = 16 * 1024
#: And a producer's peak resident memory grows by less than this.
PRODUCER_CEILING_KIB = 4 * 1024
#: The sink samples the collector's memory every this many records.
SAMPLE_EVERY = 500
#: The slow sink's own work per record (see ``work``): about 250 us here. With an
#: unbounded queue in front of it, it had handled less than half of the records
#: when 8 producers of 16 KiB records were done.
ROUNDS = 400
#: And in the stress variant, whose records are 1 KiB: about 70 us.
STRESS_ROUNDS = 100


def work(rounds: int) -> None:
    """A fixed amount of CPU work: what one record costs the slow sink (not a wait).

    The hashing runs without the GIL, as a sink's I/O would: a pure-Python loop
    would hold it and slow the collector thread's reads to the sink's pace even
    with an unbounded queue in front of the sink, and so prove nothing.
    """
    hashlib.pbkdf2_hmac("sha256", b"record", b"salt", rounds)


class SlowSink(logging.Handler):
    """A sink slower than the producers: each record costs it ``rounds`` rounds of work.

    It publishes how many records it has handled in ``handled`` (shared with the
    producers) and samples the collector's memory as it goes.
    """

    def __init__(self, handled: Any, rounds: int) -> None:
        super().__init__()
        self.handled = handled
        self.rounds = rounds
        self.count = 0
        self.rss_start = 0  # set by the test before the flood
        self.rss_peak = 0
        self.setFormatter(logging.Formatter("%(asctime)s %(process)d %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)
        work(self.rounds)
        self.count += 1
        self.handled.value = self.count
        if self.count % SAMPLE_EVERY == 0:
            self.rss_peak = max(self.rss_peak, hw.rss_kib())


def unhandled_bound(producers: int, payload: int, sndbuf: int, rcvbuf: int, isolated: bool) -> int:
    """The most records whose logging call has returned but that the sink has not handled.

    With backpressure such a record can only be in a producer's socket (its send
    buffer, ``SO_SNDBUF``, and the collector's receive buffer, ``SO_RCVBUF``), in
    the one read of at most ``_RECV_SIZE`` bytes the collector is working through,
    or, one at most per connection, split with the part the collector holds; and
    one in the sink's hands. Each record takes at least its ``payload`` bytes of
    message. Should the guard have moved the sink to its own thread (one call over
    ``SLOW_SINK`` seconds on a stalled machine), its bounded queue is added.
    """
    buffered = producers * (sndbuf + rcvbuf) + _loop._RECV_SIZE
    queued = _guard.QUEUE_RECORDS if isolated else 0
    return buffered // payload + producers + 1 + queued


def collector_rcvbuf(funnel: logfunnel.Funnel) -> int:
    """The largest receive buffer of the collector's connections."""
    collector = funnel._collector
    assert isinstance(collector, _loop.Collector)
    conns = list(collector._connections.values())
    assert conns
    return max(c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) for c in conns)


def reports_of(results: Any, handled: Any, producers: int) -> list[dict[str, Any]]:
    """Every producer's report; fails when the sink handles nothing for ``JOIN_TIMEOUT``."""
    reports: list[dict[str, Any]] = []
    seen = -1
    while len(reports) < producers:
        try:
            reports.append(results.get(timeout=JOIN_TIMEOUT))
        except queue.Empty:
            assert handled.value > seen, "the sink made no progress"
            seen = handled.value
    return reports


def run_flood(
    start_method: str, producers: int, per_producer: int, payload: int, rounds: int
) -> None:
    handled = multiprocessing.get_context(start_method).Value("q", 0, lock=False)
    sink = SlowSink(handled, rounds)
    with logfunnel.Funnel(handlers=[sink], level=logging.INFO) as funnel:
        ctx = funnel.context(start_method)
        ready, go, results = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
        procs = [
            ctx.Process(
                target=hw.flood, args=(i, per_producer, payload, ready, go, handled, results)
            )
            for i in range(producers)
        ]
        for proc in procs:
            proc.start()
        for _ in procs:
            assert ready.acquire(timeout=JOIN_TIMEOUT)  # attached: handshake done
        rcvbuf = collector_rcvbuf(funnel)
        # The memory baseline is taken before the first record of the flood.
        hw.trim_heap()
        sink.rss_start = sink.rss_peak = hw.rss_kib()
        go.set()
        reports = reports_of(results, handled, producers)
        join_all(procs, exitcode=0)
        stats = funnel.stats
    total = producers * per_producer
    assert sink.count == total
    assert (stats.records, stats.gaps, stats.missing_records) == (total, 0, 0)
    # Backpressure: a producer's logging call returns only once its record fits in
    # the socket buffers, so when the last producer is done the slow sink has
    # handled every record but those the buffers can hold. ``handled`` only grows,
    # so the producer that finished last saw the most.
    sndbuf = max(r["sndbuf"] for r in reports)
    bound = unhandled_bound(producers, payload, sndbuf, rcvbuf, stats.slow_sinks > 0)
    assert bound < total // 10, f"buffers hold {bound} records: too many to prove anything"
    last = max(reports, key=lambda r: r["handled_when_done"])
    assert last["handled_when_done"] >= total - bound, (last, bound)
    growth = sink.rss_peak - sink.rss_start
    assert growth < COLLECTOR_CEILING_KIB, f"collector grew by {growth} KiB"
    for report in reports:
        grown = report["rss_peak"] - report["rss_before"]
        assert grown < PRODUCER_CEILING_KIB, f"producer grew by {grown} KiB"


class TestBackpressure:
    @pytest.mark.skipif(FORCED_TCP, reason="its bound is computed from Unix socket buffers")
    def test_eight_fast_producers_into_a_slow_sink(self, start_method: str) -> None:
        """8 producers x 1,000 records of 16 KiB into a slower sink: none dropped, producers
        held to the sink's pace, memory flat from the start."""
        run_flood(start_method, 8, 1_000, 16 * 1024, ROUNDS)

    # The sink's 2 million calls take about 7 minutes on 2 loaded cores: the
    # timeout is for a deadlock, not for that.
    @pytest.mark.stress
    @pytest.mark.timeout(1200)
    def test_two_million_records_into_a_slow_sink(self, start_method: str) -> None:
        """8 producers x 250,000 records (2 million) into a slower sink: none dropped,
        producers held to its pace, memory flat from the start."""
        run_flood(start_method, 8, 250_000, 1024, STRESS_ROUNDS)


class Gate(Records):
    """A sink that holds the collector on the record "hold" until opened."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = threading.Event()
        self.opened = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "hold":
            self.holding.set()
            self.opened.wait(120)
        super().emit(record)


def flood_while_held(
    funnel: logfunnel.Funnel, gate: Gate, start_method: str, target: Any, count: int
) -> list[Any]:
    """Two producers run ``target(count, ready, go, done)`` once attached, while ``gate``
    holds the collector; returns what each put on ``done``, all taken before the gate
    opened: every logging call returned while the sink still held the collector."""
    ctx = funnel.context(start_method)
    done, ready, go = ctx.Queue(), ctx.Semaphore(0), ctx.Event()
    procs = [ctx.Process(target=target, args=(count, ready, go, done)) for _ in "ab"]
    for proc in procs:
        proc.start()
    for _ in procs:
        assert ready.acquire(timeout=JOIN_TIMEOUT)  # attached: handshake done
    logging.getLogger("worker").warning("hold")
    assert gate.holding.wait(JOIN_TIMEOUT)
    go.set()
    reports = [done.get(timeout=JOIN_TIMEOUT) for _ in procs]
    assert not gate.opened.is_set()
    gate.opened.set()
    join_all(procs, exitcode=0)
    return reports


class TestDropPolicy:
    def test_drop_policy_never_blocks_and_counts(self, start_method: str) -> None:
        """With overflow="drop", producers never wait on a stuck collector; drops are counted."""
        gate = Gate()
        count = 20_000
        with logfunnel.Funnel(handlers=[gate], overflow="drop", level=logging.INFO) as funnel:
            dropped = flood_while_held(funnel, gate, start_method, hw.flood_without_blocking, count)
            stats = funnel.stats
        assert all(d > 0 for d in dropped), dropped
        arrived = [r for r in gate.records if r.name == "worker" and r.getMessage() != "hold"]
        notices = [r for r in gate.records if getattr(r, "logfunnel_dropped", 0)]
        counted = sum(r.logfunnel_dropped for r in notices)  # type: ignore[attr-defined]
        assert counted == sum(dropped)
        assert len(arrived) + counted + stats.sink_dropped == 2 * count
        assert all(
            re.fullmatch(r"logfunnel: dropped \d+ record\(s\) because .*", r.getMessage())
            for r in notices
        )
        # What did arrive is whole and in order for each producer.
        for pid in {r.process for r in arrived}:
            numbers = [int(r.getMessage().split()[1][1:]) for r in arrived if r.process == pid]
            assert numbers == sorted(numbers)

    def test_block_is_the_default(self) -> None:
        """Without a choice, the collector tells producers to wait (backpressure), not drop."""
        with logfunnel.Funnel(handlers=[logging.NullHandler()]):
            handler = logfunnel.attached()
            assert handler is not None
            assert handler.config["overflow"] == "block"
        with pytest.raises(ValueError, match="overflow"):
            logfunnel.Funnel(handlers=[], overflow="sometimes")
