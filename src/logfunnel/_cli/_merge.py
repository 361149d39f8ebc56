"""``logfunnel merge FILE... [-o OUT]``: per-process files into one log ordered by time."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from .._files._merge import CHUNK, DEFAULT_MAX_OPEN, merge_files

__all__ = ["HELP", "add_arguments", "run"]

HELP = "join per-process log files (ProcessFileHandler's format) into one log ordered by time"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="per-process log files")
    parser.add_argument(
        "-o", "--output", default="-", metavar="OUT", help="the merged log (default: stdout)"
    )
    parser.add_argument(
        "--max-open",
        type=int,
        default=DEFAULT_MAX_OPEN,
        help=f"inputs open at once; more are merged in groups first (default {DEFAULT_MAX_OPEN})",
    )


def _say(message: str) -> None:
    print(f"logfunnel merge: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    paths: list[str] = args.files
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        _say(f"not a file: {', '.join(missing)}")
        return 2
    if args.max_open < 2:
        _say("--max-open must be at least 2")
        return 2
    if args.output == "-":
        try:
            result = merge_files(paths, sys.stdout.buffer, report=_say, max_open=args.max_open)
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            # The reader left (``| head``): nothing more to say, and no traceback at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
    else:
        output = os.path.abspath(args.output)
        if any(os.path.exists(output) and os.path.samefile(output, path) for path in paths):
            _say(f"{args.output} is also an input; choose another output")
            return 2
        directory = os.path.dirname(output)
        if not os.path.isdir(directory):
            _say(f"no such directory for the output: {directory}")
            return 2
        # Written aside and renamed into place, so OUT is never a half-written merge.
        fd, partial = tempfile.mkstemp(prefix=".merge-", dir=directory)
        try:
            with os.fdopen(fd, "wb", buffering=CHUNK) as out:
                result = merge_files(
                    paths, out, report=_say, max_open=args.max_open, scratch=directory
                )
            os.replace(partial, output)
        except BaseException:
            os.unlink(partial)
            raise
    summary = f"{result.records} records from {result.files} files -> {args.output}"
    if result.unplaced:
        summary += f"; {result.unplaced} lines could not be placed (listed above)"
    if result.out_of_order:
        summary += f"; {result.out_of_order} records out of time order within their file"
    if result.repeated:
        inputs = "input" if result.repeated == 1 else "inputs"
        summary += f"; {result.repeated} repeated {inputs} merged once (listed above)"
    _say(summary)
    return 0 if result.ok else 1
