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
from collections.abc import Iterable
from pathlib import Path

from .._audit import Audit, RecordShape, Summary, numbered_set
from .._funnel import DEFAULT_FORMAT, Funnel

__all__ = ["HELP", "add_arguments", "audit_files", "run"]

HELP = "run many workers into one rotating log and check that every record arrived once, in order"

#: A demo record on a line: its marker is the whole message.
_SHAPE = RecordShape(re.compile(r"demo worker (?P<worker>\d+) record (?P<number>\d+)\b"))


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


def audit_files(files: Iterable[Path], workers: int, records: int) -> Summary:
    """Account for every demo record in ``files``, a rotated set read oldest first.

    A worker's records must keep their order across the set, not only within
    a file: a record rotated into an older file after a later one of the same
    worker is out of order.
    """
    audit = Audit(_SHAPE, order="across_files", workers=workers, records=records)
    return audit.read(files).summary()


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
    for old in numbered_set(path):
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
    files = numbered_set(path)
    audit = audit_files(files, args.workers, args.records)
    rate = audit.written / elapsed if elapsed > 0 else 0.0
    print(
        f"logfunnel demo: {args.workers} workers ({args.method}), "
        f"{audit.expected} records expected, {audit.written} written, {audit.lost} lost, "
        f"{audit.duplicated} duplicated, {audit.reordered} out of order, "
        f"{elapsed:.2f} s ({rate:,.0f} records/s) -> {path} and {len(files) - 1} rotated file(s)"
    )
    if failed:
        print(f"logfunnel demo: workers that failed: {', '.join(failed)}", file=sys.stderr)
    return 0 if audit.ok and not failed else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(os.EX_USAGE)
