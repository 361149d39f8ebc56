"""Bounded memory: fast producers and a slow sink, and the opt-in drop policy."""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

import _hardening_workers as hw
import pytest

import logfunnel

JOIN_TIMEOUT = 300
#: The bound this test states: the collector's resident memory grows by less
#: than this while the records pass, whatever their number.
COLLECTOR_CEILING_KIB = 16 * 1024
#: And a producer's peak resident memory grows by less than this.
PRODUCER_CEILING_KIB = 4 * 1024


class SlowCounter(logging.Handler):
    """A slow sink: it formats each record, pauses every 500 records, and samples memory."""

    def __init__(self, handled: Any) -> None:
        super().__init__()
        self.handled = handled
        self.count = 0
        self.rss_start = 0
        self.rss_peak = 0
        self.pause = threading.Event()  # never set: wait() is a slow disk, not synchronisation
        self.setFormatter(logging.Formatter("%(asctime)s %(process)d %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)
        self.count += 1
        if self.count % 500 == 0:
            self.pause.wait(0.002)
            self.handled.value = self.count
        if self.count % 20_000 == 0:
            rss = hw.rss_kib()
            if not self.rss_start:
                self.rss_start = rss
            self.rss_peak = max(self.rss_peak, rss)


def run_flood(start_method: str, producers: int, per_producer: int) -> None:
    ctx = __import__("multiprocessing").get_context(start_method)
    handled = ctx.Value("q", 0, lock=False)
    sink = SlowCounter(handled)
    results = ctx.Queue()
    with logfunnel.Funnel(handlers=[sink], level=logging.INFO) as funnel:
        fctx = funnel.context(start_method)
        procs = [
            fctx.Process(target=hw.flood, args=(i, per_producer, handled, results))
            for i in range(producers)
        ]
        for proc in procs:
            proc.start()
        reports = [results.get(timeout=JOIN_TIMEOUT) for _ in procs]
        for proc in procs:
            proc.join(JOIN_TIMEOUT)
            assert proc.exitcode == 0
        stats = funnel.stats
    total = producers * per_producer
    assert sink.count == total
    assert (stats.records, stats.gaps, stats.missing_records) == (total, 0, 0)
    # Backpressure: when the last producer finished, the slow sink had already
    # handled nearly everything; the rest fit in the socket buffers.
    # ``handled`` only grows, so the producer that finished last saw the most.
    last = max(reports, key=lambda r: r["handled_when_done"])
    assert last["handled_when_done"] >= total * 0.9, last
    growth = sink.rss_peak - sink.rss_start
    assert growth < COLLECTOR_CEILING_KIB, f"collector grew by {growth} KiB"
    for report in reports:
        grown = report["rss_peak"] - report["rss_before"]
        assert grown < PRODUCER_CEILING_KIB, f"producer grew by {grown} KiB"


class TestBackpressure:
    def test_eight_fast_producers_into_a_slow_sink(self, start_method: str) -> None:
        """8 producers x 10,000 records into a slow sink: none dropped, memory bounded."""
        run_flood(start_method, 8, 10_000)

    @pytest.mark.stress
    def test_two_million_records_into_a_slow_sink(self, start_method: str) -> None:
        """8 producers x 250,000 records (2 million) into a slow sink: none dropped, bounded."""
        run_flood(start_method, 8, 250_000)


class Gate(logging.Handler):
    """A sink that holds the collector on the record "hold" until opened."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = threading.Event()
        self.opened = threading.Event()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "hold":
            self.holding.set()
            self.opened.wait(120)
        self.records.append(record)


class TestDropPolicy:
    def test_drop_policy_never_blocks_and_counts(self, start_method: str) -> None:
        """With overflow="drop", producers never wait on a stuck collector; drops are counted."""
        gate = Gate()
        count = 20_000
        with logfunnel.Funnel(handlers=[gate], overflow="drop", level=logging.INFO) as funnel:
            ctx = funnel.context(start_method)
            done, ready, go = ctx.Queue(), ctx.Semaphore(0), ctx.Event()
            procs = [
                ctx.Process(target=hw.flood_without_blocking, args=(count, ready, go, done))
                for _ in "ab"
            ]
            for proc in procs:
                proc.start()
            for _ in procs:
                assert ready.acquire(timeout=JOIN_TIMEOUT)  # attached: handshake done
            logging.getLogger("worker").warning("hold")
            assert gate.holding.wait(JOIN_TIMEOUT)
            go.set()
            # Every logging call returned while the sink still held the collector.
            dropped = [done.get(timeout=JOIN_TIMEOUT) for _ in procs]
            assert not gate.opened.is_set()
            gate.opened.set()
            for proc in procs:
                proc.join(JOIN_TIMEOUT)
                assert proc.exitcode == 0
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
