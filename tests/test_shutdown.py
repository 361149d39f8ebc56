"""Interpreter shutdown: records from atexit handlers, daemon threads and ``__del__``.

These scenarios need a real interpreter exit, which multiprocessing children
never have (they end with ``os._exit``), so each runs a plain Python program
as a subprocess rather than under each start method.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from _support import JOIN_TIMEOUT, Records

import logfunnel

SCRIPT = str(Path(__file__).with_name("_shutdown_script.py"))


def run_program(scenario: str) -> tuple[list[str], str, logfunnel.CollectorStats]:
    capture = Records()
    with logfunnel.Funnel(handlers=[capture]) as funnel:
        result = subprocess.run(
            [sys.executable, SCRIPT, funnel.address, scenario],
            capture_output=True,
            text=True,
            timeout=JOIN_TIMEOUT,
            check=False,
        )
    # stop() drained everything the program sent before it ended.
    stats = funnel.stats
    assert result.returncode == 0, result.stderr
    return capture.messages(), result.stderr, stats


class TestShutdown:
    def test_records_from_atexit_handlers_arrive(self) -> None:
        """atexit handlers before and after logging.shutdown both get their records through."""
        messages, err, _ = run_program("atexit")
        assert messages == [
            "main done",
            "from atexit",
            "from an atexit handler run after logging.shutdown",
        ]
        assert err == ""

    def test_daemon_thread_logging_at_exit(self) -> None:
        """A daemon thread logging without pause at exit leaves a whole, gap-free prefix."""
        messages, err, stats = run_program("daemon")
        numbers = [int(m.split("n")[-1]) for m in messages if m.startswith("daemon n")]
        assert len(numbers) >= 1000
        assert numbers == list(range(len(numbers)))
        assert "main done" in messages
        # A frame cut by the frozen thread would be counted, never passed on torn.
        assert (stats.bad_connections, stats.gaps) == (0, 0)
        assert stats.partial_frames <= 1
        assert "Traceback" not in err

    def test_records_from_finalisers_at_shutdown(self) -> None:
        """__del__ run by the last garbage collection and by __main__'s teardown log fine."""
        messages, err, _ = run_program("del")
        assert messages[0] == "main done"
        assert sorted(messages[1:]) == [
            "from __del__ of a module global",
            "from __del__ of a reference cycle",
            "from an atexit handler run after logging.shutdown",
        ]
        assert err == ""


class TestShutdownWithoutCollector:
    @pytest.mark.parametrize("scenario", ["atexit", "del"])
    def test_records_at_exit_after_the_collector_stopped_are_on_stderr(self, scenario: str) -> None:
        """With the collector gone, records at exit go to stderr (or fd 2) with their count."""
        capture = Records()
        with logfunnel.Funnel(handlers=[capture]) as funnel:
            proc = subprocess.Popen(
                [sys.executable, SCRIPT, funnel.address, scenario, "wait"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n"
        _, err = proc.communicate("go\n", timeout=JOIN_TIMEOUT)
        assert proc.returncode == 0, err
        assert capture.messages() == ["main done"]
        fallen = re.findall(r"WARNING worker: (.*) \[logfunnel: collector unreachable\]", err)
        expected = {
            "atexit": ["from atexit", "from an atexit handler run after logging.shutdown"],
            "del": [
                "from an atexit handler run after logging.shutdown",
                "from __del__ of a reference cycle",
                "from __del__ of a module global",
            ],
        }[scenario]
        assert sorted(fallen) == sorted(expected)
        assert "Traceback" not in err
        # The count is written when logging.shutdown closes the handler.
        assert re.search(r"logfunnel: pid \d+: \d+ record\(s\) could not be sent", err)
