"""``logfunnel`` / ``python -m logfunnel``: one sub-command per module.

Each command module has ``HELP`` (a line), ``add_arguments(parser)`` and
``run(args) -> exit code``; this module only wires them together, so a command
costs nothing until it is chosen.

``bench`` is the exception: the benchmark is a tool of the repository
(``bench/`` at its root, ``python -m bench``), not part of the package. Here
it only forwards its arguments to that folder when logfunnel runs from a clone
(an editable install), and otherwise says where the benchmark lives.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

_COMMANDS = {
    "demo": "logfunnel._cli._demo",
    "merge": "logfunnel._cli._merge",
    "run": "logfunnel._cli._run",
    "serve": "logfunnel._cli._serve",
}

_BENCH_HELP = (
    "run the repository's benchmark (bench/, python -m bench); "
    "it is not in the package, so this works only when logfunnel runs from a clone"
)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

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
    # Every argument, --help included, goes to the repository's bench as it is.
    bench = sub.add_parser("bench", help=_BENCH_HELP, add_help=False, prefix_chars="\0")
    bench.add_argument("argv", nargs=argparse.REMAINDER)
    bench.set_defaults(run=_bench)
    return parser


def _source_root() -> Path | None:
    """The root of the clone this logfunnel runs from, or None for an installed package."""
    root = Path(__file__).resolve().parents[3]
    if (root / "src" / "logfunnel" / "_cli").is_dir() and (root / "pyproject.toml").is_file():
        return root
    return None


def _bench(args: argparse.Namespace) -> int:
    """``logfunnel bench``: ``python -m bench`` of the clone this logfunnel comes from."""
    root = _source_root()
    folder = None if root is None else root / "bench"
    if folder is None or not (folder / "__main__.py").is_file():
        print(
            "logfunnel bench: the benchmark is not part of the installed package; it lives in"
            " bench/ of the logfunnel repository: in a clone, run python -m bench"
            " (see bench/README.md)",
            file=sys.stderr,
        )
        return 2
    # On the path, not loaded from a file: spawned workers import bench's modules by name.
    if str(folder.parent) not in sys.path:
        sys.path.insert(0, str(folder.parent))
    bench = importlib.import_module("bench")
    if Path(bench.__file__ or "").resolve().parent != folder:
        print(f"logfunnel bench: 'bench' imports {bench.__file__}, not {folder}", file=sys.stderr)
        return 2
    code: int = bench.main(args.argv, prog="logfunnel bench")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code.

    With no ``argv`` this is the process's own command line (the console
    script, ``python -m logfunnel``), and a command may ask to end the process
    by a signal (``args.end_signal``): ``run`` does when a signal killed its
    COMMAND, so that whoever waits for this process sees what it would have
    seen without it. Called with a list, as a program or a test does, it
    returns the exit code only.
    """
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    signum = getattr(args, "end_signal", None)
    if argv is None and signum:
        _end_by_signal(signum)
    return code


def _end_by_signal(signum: int) -> None:
    """End this process by ``signum``, as the default action does; return if it does not."""
    import os
    import signal

    sys.stdout.flush()
    sys.stderr.flush()
    try:
        signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
    except (ValueError, OSError, AttributeError):
        return
    os.kill(os.getpid(), signum)
