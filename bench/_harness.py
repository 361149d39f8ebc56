"""Running one way once, and what is measured while it runs.

Every run has the same shape, whatever the way. The parent opens the way
(listener, collector, manager), starts the workers, and waits until each has
set up its logging and said it is ready. It then starts the clocks and
releases them all at once. Each worker logs its records, finishes (flushes,
joins its queue's feeder thread) and reports. Once all have reported, the
parent drains the way until everything is in the output, stops the clocks,
and reads the output back.

* Wall time: from the release to the last record written (for ways without
  a single writer, the last worker's end).
* CPU time of every process involved: each worker's own from release to
  finish (all its threads), plus the parent's (where collectors and listeners
  run), plus helper processes' (the Manager) from ``/proc``. Process start-up
  and interpreter exit are outside the window, for every way alike.
* The caller's CPU per logging call: the worker thread's ``thread_time``
  around the logging loop, which leaves out work that a way moves to a
  background thread.
* The single writer's CPU: the parent's (collector or listener thread) plus
  any helper process's, which is the cost a way moves out of the workers.
* Peak resident memory of the single writer's process, with the kernel's
  high-water mark reset at the start (``/proc/self/clear_refs``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from logfunnel._audit import Summary

from ._ways import WAYS, BenchError, Spec, Workers
from ._workload import audit

__all__ = ["Sample", "run_once", "summarise"]

_MIB = 1024 * 1024


@dataclass
class Sample:
    """The measurements of one run of one way."""

    way: str
    method: str
    processes: int
    records: int
    size: int
    seconds: float
    cpu: float
    caller: float
    writer_cpu: float
    writer_rss: int | None
    audit: Summary | None
    ages: Sequence[float] | None = field(default=None, repr=False)

    @property
    def total(self) -> int:
        return self.processes * self.records


def run_once(
    name: str,
    method: str,
    processes: int,
    records: int,
    size: int,
    base: str | None = None,
    *,
    rate: float = 0.0,
    latency: bool = False,
) -> Sample:
    """Run way ``name`` once: ``processes`` workers x ``records`` records of ``size``."""
    directory = tempfile.mkdtemp(prefix=f"{name}-{method}-", dir=base)
    spec = Spec(method, processes, records, size, directory, rate=rate, latency=latency)
    way = WAYS[name](spec)
    count = 1 if way.one_process else processes
    total = processes * records
    ctx = multiprocessing.get_context(method)
    ready = ctx.Semaphore(0)
    go = ctx.Event()
    results: Any = ctx.Queue()
    deadline = time.monotonic() + 120 + 0.002 * total + (total / (rate * count) if rate else 0)
    workers: Workers | None = None
    try:
        way.open()
        workers = way.launch(ready, go, results)
        _wait_ready(name, ready, count, workers, results, deadline)
        helpers = way.helper_pids()
        helper_cpu0 = sum(_proc_cpu(pid) for pid in helpers)
        _reset_peak_rss()
        cpu0 = time.process_time()
        t0 = time.monotonic()
        go.set()
        reports = _collect(name, results, count, workers, deadline)
        done_at = way.drain()
        t1 = time.monotonic()
        cpu1 = time.process_time()
        helper_cpu1 = sum(_proc_cpu(pid) for pid in helpers)
        if way.writer == "parent":
            rss: int | None = _peak_rss("self")
        elif way.writer == "helper":
            rss = max((_peak_rss(str(pid)) or 0 for pid in helpers), default=0) or None
        else:
            rss = None
        workers.join()
    except BaseException:
        if workers is not None:
            workers.kill()
        raise
    finally:
        way.close()
        results.close()
    end = (done_at or t1) if way.writer else max(report["end"] for report in reports)
    checked = None
    if way.audited:
        written_by = 1 if way.one_process else processes
        checked = audit(way.outputs(), written_by, total // written_by, size)
    shutil.rmtree(directory, ignore_errors=True)
    return Sample(
        way=name,
        method=method,
        processes=processes,
        records=records,
        size=size,
        seconds=end - t0,
        cpu=sum(r["cpu"] for r in reports) + (cpu1 - cpu0) + (helper_cpu1 - helper_cpu0),
        caller=sum(r["caller"] for r in reports),
        writer_cpu=(cpu1 - cpu0) + (helper_cpu1 - helper_cpu0),
        writer_rss=rss,
        audit=checked,
        ages=way.latency.ages(reports) if way.latency is not None else None,
    )


def _problem(name: str, workers: Workers, results: Any) -> str | None:
    problem = workers.failure()
    if problem is None:
        return None
    with contextlib.suppress(queue.Empty, OSError, EOFError):
        report = results.get_nowait()
        if "error" in report:
            problem += f": {report['error']}"
    return f"{name}: {problem}"


def _wait_ready(
    name: str, ready: Any, count: int, workers: Workers, results: Any, deadline: float
) -> None:
    got = 0
    while got < count:
        if ready.acquire(timeout=0.5):
            got += 1
            continue
        problem = _problem(name, workers, results)
        if problem is not None:
            raise BenchError(problem)
        if time.monotonic() > deadline:
            raise BenchError(f"{name}: workers not ready in time")


def _collect(
    name: str, results: Any, count: int, workers: Workers, deadline: float
) -> list[dict[str, Any]]:
    reports: list[dict[str, Any]] = []
    while len(reports) < count:
        try:
            report = results.get(timeout=0.5)
        except queue.Empty:
            problem = _problem(name, workers, results)
            if problem is not None:
                raise BenchError(problem) from None
            if time.monotonic() > deadline:
                raise BenchError(f"{name}: workers did not finish in time") from None
            continue
        if "error" in report:
            raise BenchError(f"{name}: worker {report['index']} failed: {report['error']}")
        reports.append(report)
    return reports


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process, from ``/proc`` (0 where there is none)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _reset_peak_rss() -> None:
    """Reset this process's peak RSS to its current RSS, so the peak is this run's."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _peak_rss(pid: str) -> int | None:
    """Peak resident memory in bytes (``VmHWM``), or None where ``/proc`` has none."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    if pid == "self":
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)
    return None


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(samples: list[Sample]) -> dict[str, Any]:
    """One way's runs as one row: medians of the rates and costs, the worst of the counts.

    A single lost record in any run must show, so loss and its kind are the
    maximum over runs, not the median.
    """
    first = samples[0]
    total = first.total
    rates = [total / s.seconds for s in samples]
    row: dict[str, Any] = {
        "way": first.way,
        "label": WAYS[first.way].label,
        "method": first.method,
        "processes": first.processes,
        "records": first.records,
        "size": first.size,
        "runs": len(samples),
        "seconds": statistics.median(s.seconds for s in samples),
        "records_per_s": statistics.median(rates),
        "rates": rates,
        "cpu_us": statistics.median(s.cpu / total * 1e6 for s in samples),
        "caller_us": statistics.median(s.caller / total * 1e6 for s in samples),
        "writer_us": statistics.median(s.writer_cpu / total * 1e6 for s in samples),
        "writer": WAYS[first.way].writer or None,
        "writer_rss_mib": None,
        "mb_per_s": None,
        "audited": first.audit is not None,
    }
    peaks = [s.writer_rss for s in samples if s.writer_rss is not None]
    if peaks:
        row["writer_rss_mib"] = max(peaks) / _MIB
    audits = [s.audit for s in samples if s.audit is not None]
    if audits:
        for key in ("lost", "duplicated", "reordered", "torn"):
            row[key] = max(getattr(a, key) for a in audits)
        row["mb_per_s"] = statistics.median(
            a.bytes / s.seconds / 1e6 for s, a in zip(samples, audits, strict=True)
        )
    ages = [s.ages for s in samples if s.ages]
    if ages:
        row["latency_ms"] = {
            "p50": statistics.median(_quantile(a, 0.50) for a in ages) * 1e3,
            "p99": statistics.median(_quantile(a, 0.99) for a in ages) * 1e3,
            "max": max(max(a) for a in ages) * 1e3,
            "within_10ms": statistics.median(sum(x <= 0.010 for x in a) / len(a) for a in ages),
            "samples": sum(len(a) for a in ages),
        }
    return row
