"""``logfunnel`` / ``python -m logfunnel``: one sub-command per module.

Each command module has ``HELP`` (a line), ``add_arguments(parser)`` and
``run(args) -> exit code``; this module only wires them together, so a command
costs nothing until it is chosen.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

__all__ = ["main"]

_COMMANDS = {
    "demo": "logfunnel._demo",
    "merge": "logfunnel._merge",
    "bench": "logfunnel._bench",
}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="logfunnel",
        description="One ordered log from every process, built on stdlib logging.",
    )
    parser.add_argument("--version", action="version", version=f"logfunnel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in _COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code."""
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code
