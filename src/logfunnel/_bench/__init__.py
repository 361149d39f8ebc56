"""``logfunnel bench``: logfunnel against the other ways to get one log, same run, same machine.

This module holds only the command's interface, so that building the CLI
parser stays cheap; the harness is imported when the command runs.
"""

from __future__ import annotations

import argparse
import multiprocessing

__all__ = ["HELP", "add_arguments", "run"]

HELP = "measure logfunnel against the other ways to get one log from many processes"

#: The parameters of the issue's table: 4 processes x 20,000 records of 100 bytes.
DEFAULT_PROCESSES = 4
DEFAULT_RECORDS = 20_000
DEFAULT_SIZE = 100


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas: {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers: {text!r}")
    return values


def _name_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    methods = [m for m in ("fork", "spawn") if m in multiprocessing.get_all_start_methods()]
    parser.add_argument(
        "--processes",
        type=int,
        default=DEFAULT_PROCESSES,
        help=f"worker processes (default {DEFAULT_PROCESSES})",
    )
    parser.add_argument(
        "--records",
        type=int,
        default=DEFAULT_RECORDS,
        help=f"records per process (default {DEFAULT_RECORDS:,})",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=DEFAULT_SIZE,
        help=f"message size in bytes (default {DEFAULT_SIZE})",
    )
    parser.add_argument(
        "--method",
        type=_name_list,
        default=methods,
        help=f"start methods, comma-separated (default {','.join(methods)})",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each way; the table shows medians (default 3)",
    )
    parser.add_argument(
        "--ways",
        type=_name_list,
        default=None,
        help="only these ways, comma-separated (default: all; logfunnel always runs)",
    )
    parser.add_argument(
        "--scale",
        type=_int_list,
        default=None,
        metavar="N,N,...",
        help="also: logfunnel against per-process files at these process counts",
    )
    parser.add_argument(
        "--sizes",
        type=_int_list,
        default=None,
        metavar="BYTES,...",
        help="also: MB/s at these message sizes, against a plain buffered file write",
    )
    parser.add_argument(
        "--latency",
        action="store_true",
        help="also: time from logging call to the record in the file at a steady rate",
    )
    parser.add_argument(
        "--latency-rate",
        type=int,
        default=10_000,
        help="records/s of all processes together for --latency (default 10,000)",
    )
    parser.add_argument(
        "--latency-seconds",
        type=float,
        default=3.0,
        help="how long each --latency run lasts (default 3)",
    )
    parser.add_argument(
        "--no-compare",
        action="store_true",
        help="skip the main comparison (run only --scale, --sizes, --latency)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tiny run that proves the command works: 2 processes x 2,000 records, 1 run",
    )
    parser.add_argument("--json", metavar="PATH", default=None, help="write the results as JSON")
    parser.add_argument(
        "--plot", metavar="PATH", default=None, help="draw a PNG chart (needs matplotlib)"
    )
    parser.add_argument(
        "--dir", default=None, help="where the runs write their logs (default: a temp dir)"
    )


def run(args: argparse.Namespace) -> int:
    from ._main import main

    return main(args)
