"""The bench: which runs to make, in which order, and what to do with the rows.

Runs are interleaved (each repeat runs every way once before the next
repeat starts), so that a noisy neighbour on a shared machine slows all the
ways of a repeat alike instead of one way's every run; ratios are always
taken against logfunnel's row of the same table.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import sys
import time
from collections.abc import Iterable
from typing import Any, Final

from . import DEFAULT_PROCESSES, DEFAULT_RECORDS, INSTALL, PROG
from ._harness import Sample, run_once, summarise
from ._report import describe_machine, print_report, write_json, write_plot
from ._ways import COMPARED, WAYS, BenchError
from ._workload import MIN_SIZE

__all__ = ["main"]

_QUICK_PROCESSES: Final = 2
_QUICK_RECORDS: Final = 2_000
#: Bytes logged by all processes together in one --sizes run, so 64 KiB
#: messages stay a few seconds of work instead of gigabytes.
_SIZES_BUDGET: Final = 128 * 1024 * 1024
#: What the extra modes compare: logfunnel and the baseline each target names.
_SCALE_WAYS: Final = ["logfunnel", "per-process-files"]
_SIZES_WAYS: Final = ["logfunnel", "per-process-files", "plain-write"]
_LATENCY_WAYS: Final = ["logfunnel", "stdlib-queue"]


class _Progress:
    """One line per run on stderr, so a long bench shows it is alive."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.started = time.monotonic()

    def line(self, text: str) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.started
        print(f"[{self.done}/{self.total} {elapsed:5.0f}s] {text}", file=sys.stderr, flush=True)


def _validate(args: argparse.Namespace) -> str | None:
    """The first problem with the arguments, or None."""
    available = multiprocessing.get_all_start_methods()
    unknown = [name for name in args.ways or [] if name not in COMPARED]
    checks = [
        (
            all(method in available for method in args.method),
            f"start methods must be among {', '.join(available)}",
        ),
        (
            min(args.processes, args.records, args.repeat) >= 1,
            "--processes, --records and --repeat must be at least 1",
        ),
        (
            min([args.size, *(args.sizes or [])]) >= MIN_SIZE,
            f"message sizes must be at least {MIN_SIZE} bytes",
        ),
        (max([args.processes, *(args.scale or [])]) <= 999, "at most 999 processes"),
        (
            args.latency_rate >= 1 and args.latency_seconds > 0,
            "--latency-rate and --latency-seconds must be positive",
        ),
        (not unknown, f"unknown way(s) {', '.join(unknown)}; choose from {', '.join(COMPARED)}"),
        (
            not args.plot or importlib.util.find_spec("matplotlib") is not None,
            f"--plot needs matplotlib ({INSTALL})",
        ),
        (
            not args.dask or importlib.util.find_spec("distributed") is not None,
            f"--dask needs distributed ({INSTALL})",
        ),
    ]
    return next((problem for ok, problem in checks if not ok), None)


def _apply_quick(args: argparse.Namespace) -> None:
    if not args.quick:
        return
    if args.processes == DEFAULT_PROCESSES:
        args.processes = _QUICK_PROCESSES
    if args.records == DEFAULT_RECORDS:
        args.records = _QUICK_RECORDS
    args.repeat = 1
    args.latency_seconds = min(args.latency_seconds, 1.0)


def _command(args: argparse.Namespace) -> str:
    """The canonical command line that repeats this run."""
    parts = [PROG]
    if args.quick:
        parts.append("--quick")
    parts += [
        f"--processes {args.processes}",
        f"--records {args.records}",
        f"--size {args.size}",
        f"--method {','.join(args.method)}",
        f"--repeat {args.repeat}",
    ]
    if args.ways:
        parts.append(f"--ways {','.join(args.ways)}")
    if args.no_compare:
        parts.append("--no-compare")
    if args.scale:
        parts.append(f"--scale {','.join(map(str, args.scale))}")
    if args.sizes:
        parts.append(f"--sizes {','.join(map(str, args.sizes))}")
    if args.latency:
        parts.append(f"--latency --latency-rate {args.latency_rate}")
        parts.append(f"--latency-seconds {args.latency_seconds:g}")
    if args.dask:
        parts.append("--dask")
    if args.json:
        parts.append(f"--json {args.json}")
    if args.plot:
        parts.append(f"--plot {args.plot}")
    return " ".join(parts)


def _ways_for(args: argparse.Namespace) -> list[str]:
    chosen = set(args.ways or COMPARED) | {"logfunnel"}
    return [name for name in COMPARED if name in chosen]


def _sizes_records(args: argparse.Namespace, size: int) -> int:
    """Records per process at ``size``: --records, capped so one run logs at most the budget."""
    records: int = args.records
    processes: int = args.processes
    return max(10, min(records, _SIZES_BUDGET // (processes * size)))


class _Runner:
    """Runs ways, keeps their samples, and notes skips and failures once each."""

    def __init__(self, args: argparse.Namespace, progress: _Progress) -> None:
        self.args = args
        self.progress = progress
        self.skipped: list[dict[str, str]] = []
        self.failed: list[dict[str, str]] = []
        self._broken: set[tuple[str, str]] = set()

    def available(self, names: Iterable[str], method: str) -> list[str]:
        usable = []
        for name in names:
            reason = WAYS[name].unavailable(method)
            if reason is None:
                usable.append(name)
            elif not any(s["way"] == name and s["method"] == method for s in self.skipped):
                self.skipped.append({"way": name, "method": method, "reason": reason})
        return usable

    def sample(
        self, name: str, method: str, processes: int, records: int, size: int, **kw: Any
    ) -> Sample | None:
        if (name, method) in self._broken:
            return None
        try:
            sample = run_once(name, method, processes, records, size, self.args.dir, **kw)
        except BenchError as exc:
            self._broken.add((name, method))
            self.failed.append({"way": name, "method": method, "error": str(exc)})
            self.progress.line(f"{method} {name}: FAILED: {exc}")
            return None
        rate = sample.total / sample.seconds
        lost = f", {sample.audit.lost} lost" if sample.audit is not None else ""
        self.progress.line(
            f"{method} {name} {processes}x{records}x{size}B: {rate:,.0f} records/s{lost}"
        )
        return sample


def _rows(samples: dict[str, list[Sample]]) -> list[dict[str, Any]]:
    rows = [summarise(runs) for runs in samples.values() if runs]
    reference = next((row for row in rows if row["way"] == "logfunnel"), None)
    for row in rows:
        if reference is not None:
            row["rate_vs_logfunnel"] = row["records_per_s"] / reference["records_per_s"]
            row["cpu_vs_logfunnel"] = row["cpu_us"] / reference["cpu_us"]
    return rows


def _measure(
    runner: _Runner,
    names: list[str],
    method: str,
    processes: int,
    records: int,
    size: int,
    **kw: Any,
) -> list[dict[str, Any]]:
    """Each of ``names`` ``--repeat`` times, interleaved; one row per way, ratios to logfunnel."""
    samples: dict[str, list[Sample]] = {name: [] for name in names}
    for _ in range(runner.args.repeat):
        for name, runs in samples.items():
            sample = runner.sample(name, method, processes, records, size, **kw)
            if sample is not None:
                runs.append(sample)
    return _rows(samples)


def main(args: argparse.Namespace) -> int:
    problem = _validate(args)
    if problem is not None:
        print(f"{args.prog}: {problem}", file=sys.stderr)
        return 2
    _apply_quick(args)
    compared = [] if args.no_compare else _ways_for(args)
    extra = (
        len(_SCALE_WAYS) * len(args.scale or [])
        + len(_SIZES_WAYS) * len(args.sizes or [])
        + (len(_LATENCY_WAYS) if args.latency else 0)
    )
    runs = sum(
        sum(WAYS[name].unavailable(method) is None for name in compared) + extra
        for method in args.method
    )
    runner = _Runner(args, _Progress(runs * args.repeat))
    results: dict[str, Any] = {
        "command": _command(args),
        "machine": describe_machine(),
        "params": {
            "processes": args.processes,
            "records": args.records,
            "size": args.size,
            "methods": args.method,
            "repeat": args.repeat,
        },
        "compare": {},
        "scale": {},
        "sizes": {},
        "latency": {},
    }
    n, r, size = args.processes, args.records, args.size
    for method in args.method:
        if compared:
            ways = runner.available(compared, method)
            results["compare"][method] = _measure(runner, ways, method, n, r, size)
        if args.scale:
            results["scale"][method] = [
                row
                for count in args.scale
                for row in _measure(runner, _SCALE_WAYS, method, count, r, size)
            ]
        if args.sizes:
            results["sizes"][method] = [
                row
                for each in args.sizes
                for row in _measure(
                    runner, _SIZES_WAYS, method, n, _sizes_records(args, each), each
                )
            ]
        if args.latency:
            rate = args.latency_rate / n
            records = max(1, round(rate * args.latency_seconds))
            results["latency"][method] = _measure(
                runner, _LATENCY_WAYS, method, n, records, size, rate=rate, latency=True
            )
    if args.startup:
        from ._startup import measure_startup

        results["startup"] = measure_startup()
    if args.dask:
        from ._dask import measure_dask

        results["dask"] = measure_dask(args.processes, args.records, args.size, args.repeat)
    results["skipped"] = runner.skipped
    results["failed"] = runner.failed
    print_report(results, sys.stdout)
    if args.json:
        write_json(results, args.json)
    if args.plot:
        write_plot(results, args.plot)
    return 1 if _logfunnel_failed(results) else 0


def _logfunnel_failed(results: dict[str, Any]) -> bool:
    """logfunnel's own promise: it ran, and nothing was lost, doubled, torn or reordered."""
    if any(f["way"] == "logfunnel" for f in results["failed"]):
        return True
    for section in ("compare", "scale", "sizes", "latency"):
        for rows in results[section].values():
            for row in rows:
                if row["way"] == "logfunnel" and any(
                    row.get(key) for key in ("lost", "duplicated", "reordered", "torn")
                ):
                    return True
    for row in results.get("dask", {}).get("rows", []):
        if row["way"].startswith("logfunnel") and any(
            row[key] for key in ("lost", "duplicated", "reordered")
        ):
            return True
    return False
