"""The sink options of every command that starts a collector (``run`` and ``serve``).

They are ``SinkConfig``'s fields, one flag each, plus the two ``Funnel``
arguments around them (``--level``, ``--collector``). ``FLAGS`` says which
flag sets which field, and a test holds it to ``SinkConfig``'s fields, so a
sink option added to ``Funnel``'s shortcuts cannot be missing here. The
defaults shown in ``--help`` are ``SinkConfig``'s own; an option left out is
left out of the ``Funnel`` call too, so the command line and the library
give the same funnel. Values are checked by making the ``SinkConfig`` they
describe: its message becomes a usage error (exit status 2), the same
message a program gets from ``Funnel(...)``.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import fields
from typing import Any, Final

from .._sinks._config import OVERFLOW_POLICIES, WHEN_VALUES, SinkConfig

__all__ = ["FLAGS", "add_sink_arguments", "sink_kwargs"]

#: Each ``SinkConfig`` field and the flag that sets it.
FLAGS: Final = {
    "filename": "--output",
    "console": "--console",
    "max_bytes": "--max-bytes",
    "backups": "--backups",
    "when": "--when",
    "interval": "--interval",
    "utc": "--utc",
    "encoding": "--encoding",
    "fmt": "--format",
    "datefmt": "--datefmt",
    "formatter": "--json",
    "config": "--config",
    "overflow": "--overflow",
    "otlp": "--otlp",
}

_DEFAULTS: Final = {f.name: f.default for f in fields(SinkConfig)}
_SIZE_UNITS: Final = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
# Where add_sink_arguments keeps its parser, for sink_kwargs' usage errors.
_PARSER: Final = "_sink_parser"


def _size(text: str) -> int:
    """``10000``, ``512K``, ``10M``, ``1G`` (KiB, MiB, GiB) -> bytes."""
    number, unit = text.strip(), 1
    if number[-1:].upper() in _SIZE_UNITS:
        number, unit = number[:-1], _SIZE_UNITS[number[-1].upper()]
    try:
        return int(number) * unit
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a size: {text!r} (bytes, or a number with K, M or G)"
        ) from None


def add_sink_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the sink options (``FLAGS``), ``--level`` and ``--collector`` to ``parser``."""
    group = parser.add_argument_group(
        "sinks",
        "Where the records go, as Funnel's shortcuts. With none of -o, --console and "
        "--config, the console (stderr).",
    )
    default = _DEFAULTS
    group.add_argument(
        "-o", FLAGS["filename"], dest="filename", metavar="FILE", help="write the log to FILE"
    )
    group.add_argument(
        FLAGS["console"], action="store_true", default=None, help="write the log to stderr"
    )
    group.add_argument(
        FLAGS["max_bytes"],
        dest="max_bytes",
        type=_size,
        metavar="SIZE",
        help="rotate FILE at this size (bytes, or with K, M, G; default: no size rotation)",
    )
    group.add_argument(
        FLAGS["backups"],
        type=int,
        metavar="N",
        help=f"rotated files to keep (default {default['backups']})",
    )
    group.add_argument(
        FLAGS["when"],
        metavar="WHEN",
        help=f"rotate FILE by time: {', '.join(WHEN_VALUES)} (default: no time rotation)",
    )
    group.add_argument(
        FLAGS["interval"],
        type=int,
        metavar="N",
        help=f"rotate every N units of --when (default {default['interval']})",
    )
    group.add_argument(FLAGS["utc"], action="store_true", default=None, help="time rotation in UTC")
    group.add_argument(
        FLAGS["encoding"], metavar="NAME", help=f"FILE's encoding (default {default['encoding']})"
    )
    group.add_argument(
        FLAGS["fmt"],
        dest="fmt",
        metavar="FMT",
        help=f"the line format, a logging %%-style format (default {default['fmt']!r})".replace(
            "%(", "%%("
        ),
    )
    group.add_argument(FLAGS["datefmt"], metavar="FMT", help="the strftime format of %%(asctime)s")
    group.add_argument(
        FLAGS["formatter"],
        dest="formatter",
        action="store_true",
        default=None,
        help="write JSON lines (logfunnel.JSONFormatter) instead of --format",
    )
    group.add_argument(
        FLAGS["config"],
        metavar="FILE",
        help="a logging.config.dictConfig dictionary as a JSON file: its root handlers are "
        "sinks too, and handlers it puts on other loggers get those loggers' records",
    )
    group.add_argument(
        FLAGS["overflow"],
        choices=OVERFLOW_POLICIES,
        help="when the collector is behind, producers wait (block, the default) or drop "
        "records and count them",
    )
    group.add_argument(
        FLAGS["otlp"],
        metavar="URL",
        help="also send every record to this OpenTelemetry OTLP/HTTP endpoint "
        "(http://host:4318; needs logfunnel[otel])",
    )
    group.add_argument(
        "--level",
        metavar="LEVEL",
        help="the root level while it runs, which every process takes (DEBUG, INFO, ...; "
        "default: as the program sets it)",
    )
    group.add_argument(
        "--collector",
        choices=("thread", "process"),
        default="thread",
        help="run the collector as a thread of this process (default) or as a process of "
        "its own, which writes what was sent even if this one is killed",
    )
    parser.set_defaults(**{_PARSER: parser})


def sink_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The ``Funnel`` keyword arguments the options ask for, checked.

    A bad value, or a ``--config`` file that cannot be read or is not a JSON
    object, is a usage error: a message and exit status 2.
    """
    parser: argparse.ArgumentParser = getattr(args, _PARSER)
    given = {name: getattr(args, name) for name in FLAGS if getattr(args, name) is not None}
    if given.get("filename") == "-":
        parser.error("-o - : the log goes to a file; --console writes it to stderr")
    if "config" in given:
        given["config"] = _read_config(parser, given["config"])
    if "formatter" in given:
        given["formatter"] = {}  # JSONFormatter's defaults, as data
    if not {"filename", "console", "config"} & set(given):
        given["console"] = True
    try:
        config = SinkConfig(**given)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    if "formatter" in given:
        given["formatter"] = config.formatter  # the options in full
    kwargs: dict[str, Any] = dict(given)
    if args.level is not None:
        kwargs["level"] = _level(parser, args.level)
    kwargs["collector"] = args.collector
    return kwargs


def _read_config(parser: argparse.ArgumentParser, path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except OSError as exc:
        parser.error(f"--config {path}: {exc.strerror or exc}")
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
        parser.error(f"--config {path}: not JSON: {exc}")
    if not isinstance(config, dict):
        parser.error(
            f"--config {path}: holds a JSON {type(config).__name__}, not an object "
            "(a logging.config.dictConfig dictionary)"
        )
    return config


def _level(parser: argparse.ArgumentParser, text: str) -> int:
    """``INFO``, ``info`` or ``20`` -> 20."""
    if text.strip().isdigit():
        return int(text)
    level = logging.getLevelName(text.strip().upper())
    if not isinstance(level, int):
        parser.error(f"--level: unknown level {text!r} (DEBUG, INFO, WARNING, ERROR, CRITICAL)")
    return level
