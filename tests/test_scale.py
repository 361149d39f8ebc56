"""Scale: 64 producers at once and long sequences of short-lived ones on two cores.

The collector must get every record, and give back what each producer cost
it: file descriptors return to their starting count, memory to its starting
level (within ``MEMORY_SLACK_KIB``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import _hardening_workers as hw
import pytest
from _support import JOIN_TIMEOUT, run_all

import logfunnel
from logfunnel._collector._loop import Collector
from logfunnel._collector._process import ProcessCollector

#: What a collector may keep after the producers are gone: allocator slack,
#: and about 100 bytes per producer in ``stats.producers``.
MEMORY_SLACK_KIB = 6 * 1024


class Counter(logging.Handler):
    """A sink that counts records per producer and keeps none of them."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[int, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        match = re.match(r"p(-?\d+) n\d+$", record.getMessage())
        if match:
            index = int(match.group(1))
            self.seen[index] = self.seen.get(index, 0) + 1


def run_thread_collector(start_method: str, concurrent: int, sequential: int, count: int) -> None:
    counter = Counter()
    with logfunnel.Funnel(handlers=[counter], attach_main=False, level=logging.INFO) as funnel:
        collector = funnel._collector
        assert isinstance(collector, Collector)
        ctx = funnel.context(start_method)
        # Warm up: the forkserver and resource tracker are started once, for good.
        run_all(ctx, hw.short_lived, [(-1, 1)])
        assert collector.wait_idle(JOIN_TIMEOUT)
        fds, rss = hw.fd_count(), hw.rss_kib()
        # run_all closes the processes: their sentinels are ours, not the collector's.
        run_all(ctx, hw.short_lived, [(i, count) for i in range(concurrent)])
        for index in range(concurrent, concurrent + sequential):
            run_all(ctx, hw.short_lived, [(index, count)])
        assert collector.wait_idle(JOIN_TIMEOUT)
        fds_after, rss_after = hw.fd_count(), hw.rss_kib()
        stats = funnel.stats
    total = concurrent + sequential
    assert counter.seen == {-1: 1, **{i: count for i in range(total)}}
    assert (stats.gaps, stats.bad_connections, stats.partial_frames) == (0, 0, 0)
    assert fds_after <= fds  # fewer is fine: something of an earlier test was closed
    assert rss_after - rss < MEMORY_SLACK_KIB, f"grew by {rss_after - rss} KiB"


def run_process_collector(
    start_method: str, tmp_path: Path, concurrent: int, sequential: int, count: int
) -> None:
    path = tmp_path / "scale.log"
    with logfunnel.Funnel(
        path, collector="process", attach_main=False, level=logging.INFO
    ) as funnel:
        collector = funnel._collector
        assert isinstance(collector, ProcessCollector)
        ctx = funnel.context(start_method)
        run_all(ctx, hw.short_lived, [(-1, 1)])
        assert collector.wait_idle(JOIN_TIMEOUT)
        fds, rss = hw.fd_count(collector.pid), hw.rss_kib(collector.pid)
        run_all(ctx, hw.short_lived, [(i, count) for i in range(concurrent)])
        for index in range(concurrent, concurrent + sequential):
            run_all(ctx, hw.short_lived, [(index, count)])
        assert collector.wait_idle(JOIN_TIMEOUT)
        fds_after, rss_after = hw.fd_count(collector.pid), hw.rss_kib(collector.pid)
    seen: dict[int, int] = {}
    for match in re.finditer(r"worker: p(-?\d+) n\d+$", path.read_text(), re.MULTILINE):
        seen[int(match.group(1))] = seen.get(int(match.group(1)), 0) + 1
    total = concurrent + sequential
    assert seen == {-1: 1, **{i: count for i in range(total)}}
    assert fds_after == fds
    assert rss_after - rss < MEMORY_SLACK_KIB, f"collector grew by {rss_after - rss} KiB"


class TestScale:
    def test_sixty_four_at_once_then_twenty_in_sequence(self, start_method: str) -> None:
        """64 concurrent and 20 sequential producers: every record, fds and memory given back."""
        run_thread_collector(start_method, 64, 20, 200)

    def test_process_collector_gives_back_what_producers_cost(
        self, start_method: str, tmp_path: Path
    ) -> None:
        """A collector process serving 16 + 20 producers ends with its starting fds and memory."""
        run_process_collector(start_method, tmp_path, 16, 20, 100)

    # 1,000 interpreters started one after another take about 100 s under spawn
    # on 2 cores: the timeout is for a deadlock, not for that.
    @pytest.mark.stress
    @pytest.mark.timeout(600)
    def test_a_thousand_short_lived_producers(self, start_method: str) -> None:
        """64 concurrent, then 1,000 producers started and ended one after another (stress)."""
        run_thread_collector(start_method, 64, 1000, 100)

    @pytest.mark.stress
    @pytest.mark.timeout(600)
    def test_a_thousand_short_lived_producers_process_collector(
        self, start_method: str, tmp_path: Path
    ) -> None:
        """The same 1,064 producers into a collector process (stress)."""
        run_process_collector(start_method, tmp_path, 64, 1000, 100)
