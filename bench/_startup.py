"""What the startup hook costs an interpreter's start, with and without a funnel.

The hook is a ``.pth`` line in site-packages, so every interpreter of an
environment where logfunnel is installed reads it, whether or not a funnel
runs. It must cost nothing measurable there: ``python -c pass`` in a fresh
virtual environment with the wheel installed is timed with the hook file and
without it (the file moved aside between runs), runs interleaved, and the
minimum of each compared, since the minimum is the run the machine disturbed
least. With ``LOGFUNNEL_ADDRESS`` set the same interpreter attaches as it
starts: that start (interpreter, import, handshake) is set against the
plain start, which is what a worker of ``logfunnel run`` or of a funnel's
subprocess pays once.
"""

from __future__ import annotations

import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from logfunnel._producer._startup import PTH_NAME

__all__ = ["measure_startup", "startup_lines"]

_ROOT: Final = Path(__file__).resolve().parents[1]


def _run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def _install(where: Path) -> Path:
    """A fresh virtual environment with logfunnel's wheel in it; its python."""
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(where), str(_ROOT)])
    wheel = next(where.glob("logfunnel-*.whl"))
    _run([sys.executable, "-m", "venv", "--without-pip", str(where / "venv")])
    python = where / "venv" / "bin" / "python"
    target = _purelib(python)
    _run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target, str(wheel)]
    )
    return python


def _purelib(python: Path) -> str:
    return _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
    ).strip()


def _seconds(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def measure_startup(runs: int = 20) -> dict[str, Any]:
    """Times of ``python -c pass``: without the hook, with it (unset), and attaching."""
    import logfunnel

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOGFUNNEL_", "PYTHON"))}
    with tempfile.TemporaryDirectory(prefix="logfunnel-bench-startup-") as tmp:
        where = Path(tmp)
        python = _install(where)
        pth = (
            Path(
                _run(
                    [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
                ).strip()
            )
            / PTH_NAME
        )
        aside = where / PTH_NAME
        command = [str(python), "-c", "pass"]
        times: dict[str, list[float]] = {"no_hook": [], "hook_unset": [], "attach": []}
        sink = logging.FileHandler(where / "startup.log")
        with logfunnel.Funnel(handlers=[sink], inherit=False, attach_main=False) as funnel:
            attaching = {**env, "LOGFUNNEL_ADDRESS": funnel.address}
            for _ in range(2):  # warm the page cache: not part of any sample
                _seconds(command, env)
            for _ in range(runs):
                pth.rename(aside)
                times["no_hook"].append(_seconds(command, env))
                aside.rename(pth)
                times["hook_unset"].append(_seconds(command, env))
                times["attach"].append(_seconds(command, attaching))
            connections = funnel.stats.connections
        sink.close()
    if connections != runs:
        raise RuntimeError(f"{runs} attaching starts made {connections} connections")
    plain_min, plain_median = min(times["no_hook"]), statistics.median(times["no_hook"])
    return {
        "runs": runs,
        "ms": {
            name: {"min": min(values) * 1e3, "median": statistics.median(values) * 1e3}
            for name, values in times.items()
        },
        "hook_unset_ratio_min": min(times["hook_unset"]) / plain_min,
        "attach_ratio_median": statistics.median(times["attach"]) / plain_median,
    }


def startup_lines(result: dict[str, Any]) -> list[str]:
    """The startup section of the report."""
    ms = result["ms"]
    rows = [
        ("python -c pass, no hook file", ms["no_hook"], "1.00"),
        (
            "the same, hook installed, LOGFUNNEL_ADDRESS unset",
            ms["hook_unset"],
            f"{result['hook_unset_ratio_min']:.3f} (min)",
        ),
        (
            "the same, LOGFUNNEL_ADDRESS set: import + attach",
            ms["attach"],
            f"{result['attach_ratio_median']:.2f} (median)",
        ),
    ]
    width = max(len(name) for name, _, _ in rows)
    lines = [f"interpreter start-up, {result['runs']} interleaved runs each (ms)"]
    lines.append(f"{'':{width}}  {'min':>7}  {'median':>7}  ratio")
    for name, values, ratio in rows:
        lines.append(f"{name:{width}}  {values['min']:7.1f}  {values['median']:7.1f}  {ratio}")
    return lines
