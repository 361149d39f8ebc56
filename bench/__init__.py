"""The benchmark: logfunnel against the other ways to get one log, same run, same machine.

It is a tool of the repository, not part of the package: from the root of a
clone, with logfunnel installed from it (``pip install -e '.[bench]'``)::

    python -m bench --quick

``logfunnel bench`` runs it too when logfunnel is installed from a clone.
This module holds only the command's interface (``HELP``,
``add_arguments``, ``run``, as the CLI's command modules have), so that
building a parser stays cheap; the harness is imported when the command runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import sys
from collections.abc import Sequence

__all__ = ["HELP", "PROG", "add_arguments", "main", "run"]

HELP = "measure logfunnel against the other ways to get one log from many processes"

#: The command that runs the bench, as its messages and its results name it.
PROG = "python -m bench"

#: How to get logfunnel and the third-party peers, from the root of a clone.
INSTALL = "pip install -e '.[bench]'"

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
    # Messages name the command as it was started (python -m bench, logfunnel bench).
    parser.set_defaults(prog=parser.prog)
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
        "--startup",
        action="store_true",
        help="also: what the startup hook costs an interpreter's start (builds the wheel)",
    )
    parser.add_argument(
        "--dask",
        action="store_true",
        help="also: logfunnel.dask against Client.forward_logging on a local Dask cluster "
        "(--processes workers x --records records; needs distributed)",
    )
    parser.add_argument(
        "--no-compare",
        action="store_true",
        help="skip the main comparison (run only --scale, --sizes, --latency, --startup, --dask)",
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
    if importlib.util.find_spec("logfunnel") is None:
        print(
            f"{args.prog}: logfunnel is not installed; from the repository root: {INSTALL}",
            file=sys.stderr,
        )
        return 2
    from ._main import main as measure

    return measure(args)


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Parse ``argv`` (default: the command line) and run; returns the exit code."""
    parser = argparse.ArgumentParser(prog=prog, description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))
