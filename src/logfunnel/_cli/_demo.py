"""``logfunnel demo``: many workers, one rotating file and the console, then an audit.

The demo is the product's promise run end to end. Workers under the chosen
start method log with plain ``logging`` and no set-up of their own. The parent
hosts the funnel. Then the rotated file set is read back and every record
is accounted for: expected, written, lost, duplicated, out of order.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .._funnel import DEFAULT_FORMAT, Funnel

__all__ = ["HELP", "Audit", "add_arguments", "audit_files", "rotated_set", "run"]

HELP = "run many workers into one rotating log and check that every record arrived once, in order"

_LINE = re.compile(r"demo worker (\d+) record (\d+)\b")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=10, help="worker processes (default 10)")
    parser.add_argument(
        "--records", type=int, default=1000, help="records per worker (default 1000)"
    )
    parser.add_argument(
        "--method",
        default="spawn",
        choices=["fork", "spawn", "forkserver"],
        help="multiprocessing start method (default spawn)",
    )
    parser.add_argument(
        "--dir", default=None, help="where to write demo.log (default: a new temp dir)"
    )
    parser.add_argument(
        "--max-bytes",
        type=int,
        default=256 * 1024,
        help="rotate the file at this size (default 256 KiB)",
    )


def _worker(index: int, records: int) -> None:
    log = logging.getLogger("demo")
    for number in range(records):
        log.info("demo worker %d record %d", index, number)
    log.warning("demo worker %d finished: %d records sent", index, records)


@dataclass
class Audit:
    """What the file set holds compared with what was sent."""

    expected: int
    written: int
    lost: int
    duplicated: int
    out_of_order: int

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.out_of_order == 0


def rotated_set(path: Path) -> list[Path]:
    """The file and its rotated copies, oldest first (``.N`` is older than ``.N-1``)."""
    numbered = []
    for candidate in path.parent.glob(path.name + ".*"):
        suffix = candidate.name[len(path.name) + 1 :]
        if suffix.isdigit():
            numbered.append((int(suffix), candidate))
    files = [p for _, p in sorted(numbered, reverse=True)]
    if path.exists():
        files.append(path)
    return files


def audit_files(files: list[Path], workers: int, records: int) -> Audit:
    """Count every ``demo worker W record N`` line across ``files`` read oldest first."""
    seen: dict[tuple[int, int], int] = {}
    last = [-1] * workers
    out_of_order = 0
    for file in files:
        with file.open(encoding="utf-8") as handle:
            for line in handle:
                match = _LINE.search(line)
                if match is None:
                    continue
                worker, number = int(match.group(1)), int(match.group(2))
                seen[(worker, number)] = seen.get((worker, number), 0) + 1
                if 0 <= worker < workers:
                    if number < last[worker]:
                        out_of_order += 1
                    last[worker] = max(last[worker], number)
    expected = workers * records
    present = sum(1 for w in range(workers) for n in range(records) if (w, n) in seen)
    return Audit(
        expected=expected,
        written=sum(seen.values()),
        lost=expected - present,
        duplicated=sum(count - 1 for count in seen.values() if count > 1),
        out_of_order=out_of_order,
    )


def run(args: argparse.Namespace) -> int:
    if args.workers < 1 or args.records < 0:
        print(
            "logfunnel demo: --workers must be at least 1 and --records not negative",
            file=sys.stderr,
        )
        return 2
    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="logfunnel-demo-"))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "demo.log"
    for old in rotated_set(path):
        old.unlink()
    expected_bytes = args.workers * (args.records + 1) * 120
    backups = max(5, 2 * expected_bytes // max(1, args.max_bytes) + 5)
    file_sink = logging.handlers.RotatingFileHandler(
        path, maxBytes=args.max_bytes, backupCount=backups, encoding="utf-8"
    )
    file_sink.setFormatter(logging.Formatter(DEFAULT_FORMAT))
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter("%(processName)-16s %(levelname)-7s %(message)s"))
    started = time.perf_counter()
    with Funnel(handlers=[file_sink, console], level=logging.INFO) as funnel:
        ctx = funnel.context(args.method)
        procs = [
            ctx.Process(target=_worker, args=(i, args.records), name=f"worker-{i}")
            for i in range(args.workers)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        failed = [p.name for p in procs if p.exitcode != 0]
    elapsed = time.perf_counter() - started
    files = rotated_set(path)
    audit = audit_files(files, args.workers, args.records)
    rate = audit.written / elapsed if elapsed > 0 else 0.0
    print(
        f"logfunnel demo: {args.workers} workers ({args.method}), "
        f"{audit.expected} records expected, {audit.written} written, {audit.lost} lost, "
        f"{audit.duplicated} duplicated, {audit.out_of_order} out of order, "
        f"{elapsed:.2f} s ({rate:,.0f} records/s) -> {path} and {len(files) - 1} rotated file(s)"
    )
    if failed:
        print(f"logfunnel demo: workers that failed: {', '.join(failed)}", file=sys.stderr)
    return 0 if audit.ok and not failed else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(os.EX_USAGE)
