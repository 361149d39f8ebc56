"""`python -m bench`: every way runs and is accounted for, and the loss counter is real.

The bench is the repository's package bench/, not part of logfunnel; conftest
puts the repository root on the path. Speed itself is not asserted here: it
is what the bench reports. These tests prove that the command works and that
its counts can be trusted.
"""

from __future__ import annotations

import array
import importlib.util
import json
import logging
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import logfunnel
from bench import _ways, main
from bench._ways import COMPARED
from bench._workload import audit, message

#: The repository root, where ``python -m bench`` runs.
ROOT = Path(__file__).resolve().parent.parent

#: The ways that need nothing but the standard library; they always run.
STDLIB_WAYS = {
    "logfunnel",
    "logfunnel-tcp",
    "stdlib-queue",
    "stdlib-manager",
    "per-process-files",
    "single-process",
    "null-handler",
}


def _write_log(path: Path, entries: list[tuple[int, int]], size: int = 100) -> None:
    """A log file as a sink writes it: a formatted prefix, then each message."""
    formatter = logging.Formatter(logfunnel.DEFAULT_FORMAT)
    lines = []
    for worker, seq in entries:
        record = logging.LogRecord(
            "bench", logging.INFO, "", 0, message(worker, seq, size), (), None
        )
        lines.append(formatter.format(record))
    lines.append("a line the sink wrote that is not a bench record")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


class TestAudit:
    """Reading a way's output back counts exactly what is wrong with it."""

    @pytest.mark.timeout(10)
    def test_complete_log_is_clean(self, tmp_path: Path) -> None:
        """Every record once, in order, gives zero of every kind of damage."""
        log = tmp_path / "bench.log"
        _write_log(log, [(w, s) for s in range(5) for w in range(2)])
        result = audit([log], workers=2, records=5, size=100)
        assert (result.expected, result.written, result.ok) == (10, 10, True)

    @pytest.mark.timeout(10)
    def test_torn_record_is_torn_and_lost(self, tmp_path: Path) -> None:
        """A message cut short, or a marker whose number is not digits, counts as torn, and
        as lost: it never arrived whole."""
        log = tmp_path / "bench.log"
        _write_log(log, [(0, 0), (0, 1), (0, 2)])
        text = log.read_text(encoding="utf-8").splitlines()
        text[1] = text[1][:-10]
        text[2] = text[2].replace(" s=00000002]", " s=0000000?]")
        log.write_text("\n".join(text) + "\n", encoding="utf-8")
        result = audit([log], workers=1, records=3, size=100)
        assert (result.torn, result.lost, result.written) == (2, 2, 1)

    @pytest.mark.timeout(10)
    def test_reordered_record_is_counted_per_file(self, tmp_path: Path) -> None:
        """A worker's sequence going backwards in a file counts; separate files do not."""
        _write_log(tmp_path / "a.log", [(0, 0), (0, 2), (0, 1)])
        _write_log(tmp_path / "b.log", [(1, 1)])
        _write_log(tmp_path / "c.log", [(1, 0)])
        result = audit(sorted(tmp_path.iterdir()), workers=2, records=3, size=100)
        assert (result.reordered, result.lost) == (1, 1)


class TestArguments:
    """Bad arguments stop the command before any process starts."""

    @pytest.mark.timeout(10)
    @pytest.mark.parametrize(
        "argv",
        [["--processes", "0"], ["--size", "10"], ["--ways", "nosuch"], ["--method", "nosuch"]],
    )
    def test_bad_arguments_exit_2(
        self, argv: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Exit code 2 and a message naming the problem, nothing measured."""
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert captured.err.startswith("python -m bench: ")
        assert captured.out == ""


class TestQuickRun:
    """The command CI runs: a tiny comparison of every way, under fork and spawn."""

    @pytest.mark.timeout(90)
    def test_quick_run_accounts_for_every_way(self, tmp_path: Path) -> None:
        """Each way ran or was skipped with a reason, and logfunnel lost nothing."""
        out = tmp_path / "results.json"
        result = subprocess.run(
            [sys.executable, "-m", "bench", "--quick", "--json", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=80,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        results: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        assert results["command"].startswith("python -m bench --quick ")
        methods = results["params"]["methods"]
        assert set(results["compare"]) == set(methods)
        for method in methods:
            rows = {row["way"]: row for row in results["compare"][method]}
            skipped = {s["way"] for s in results["skipped"] if s["method"] == method}
            assert set(rows) >= STDLIB_WAYS
            assert set(rows) | skipped == set(COMPARED), results["failed"]
            assert f"{method}: 2 processes x 2,000 records" in result.stdout
            logfunnel_row = rows["logfunnel"]
            assert logfunnel_row["lost"] == 0
            assert logfunnel_row["duplicated"] == 0
            assert logfunnel_row["reordered"] == 0
            assert logfunnel_row["rate_vs_logfunnel"] == 1.0
            assert all(row["records_per_s"] > 0 for row in rows.values())
        header: list[str] = []
        for line in result.stdout.splitlines():
            cells = re.split(r"\s{2,}", line.strip())
            if cells[0] == "way":
                header = cells
            elif cells[0] == "logfunnel":
                row = dict(zip(header, cells, strict=True))
                assert (row["lost"], row["dup"], row["reord"]) == ("0", "0", "0")

    @pytest.mark.timeout(60)
    def test_extra_modes_run(self, tmp_path: Path) -> None:
        """--scale, --sizes and --latency each give their table, and --plot a PNG."""
        argv = [
            "--quick",
            "--no-compare",
            "--method",
            "fork",
            "--records",
            "300",
            "--scale",
            "1,2",
            "--sizes",
            "1024",
            "--latency",
            "--latency-rate",
            "2000",
            "--latency-seconds",
            "0.3",
            "--json",
            str(tmp_path / "results.json"),
        ]
        plot = importlib.util.find_spec("matplotlib") is not None
        if plot:
            argv += ["--plot", str(tmp_path / "chart.png")]
        assert main(argv) == 0
        results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
        assert {row["processes"] for row in results["scale"]["fork"]} == {1, 2}
        assert {row["way"] for row in results["sizes"]["fork"]} == {
            "logfunnel",
            "per-process-files",
            "plain-write",
        }
        latency = {row["way"]: row for row in results["latency"]["fork"]}
        assert latency["logfunnel"]["latency_ms"]["samples"] == 600
        assert latency["logfunnel"]["lost"] == 0
        if plot:
            assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG")

    def test_latency_probe_measures_line_mode(self, tmp_path: Path) -> None:
        """The latency probe beside the file sink keeps the collector in line mode, and
        it ages each record from its logging call to the write of its line."""
        spec = _ways.Spec("fork", 1, 10, 100, str(tmp_path), rate=1000.0, latency=True)
        way = _ways.WAYS["logfunnel"](spec)
        way.open()
        try:
            handler = logfunnel.attached()
            assert handler is not None
            assert handler.config["lines"] is not None
            called = time.time()
            logging.getLogger("bench").info(_ways.FMT_PERCENT, 0, 0, "x")
            way.drain()
        finally:
            way.close()
        assert way.latency is not None
        report = {"index": 0, "called": array.array("d", [called] * 10).tobytes()}
        (age,) = way.latency.ages([report])
        assert 0 <= age < 5

    @pytest.mark.timeout(60)
    def test_missing_peer_is_skipped_with_a_note(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without loguru, its way is skipped with the install hint; logfunnel still runs."""
        real_find_spec = importlib.util.find_spec

        def find_spec(name: str, package: str | None = None) -> Any:
            return None if name == "loguru" else real_find_spec(name, package)

        monkeypatch.setattr(_ways.importlib.util, "find_spec", find_spec)
        argv = ["--quick", "--method", "fork", "--ways", "loguru-enqueue"]
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "note: loguru-enqueue (fork): skipped, not installed" in out
        assert "pip install -e '.[bench]'" in out
        assert out.count("\nlogfunnel ") == 1


class TestStartup:
    @pytest.mark.timeout(300)
    def test_startup_runs_time_a_hook_that_really_attaches(self) -> None:
        """--startup times the three starts in a fresh venv from the wheel, and every run
        with the variable set really attached (one connection each)."""
        from bench._startup import measure_startup, startup_lines

        result = measure_startup(runs=2)
        assert result["runs"] == 2
        assert set(result["ms"]) == {"no_hook", "hook_unset", "attach"}
        assert result["ms"]["attach"]["min"] > 0
        lines = startup_lines(result)
        assert lines[0].startswith("interpreter start-up, 2 interleaved runs")
        assert len(lines) == 5


class TestDask:
    def test_read_back_counts_what_is_missing_doubled_and_out_of_order(
        self, tmp_path: Path
    ) -> None:
        """The Dask scenario's read-back counts a missing, a doubled and a reordered record
        of its run, and ignores other runs' records and other lines."""
        from bench._dask import _read_back

        lines = [f"x [dask r=7 t={t} s={s}] y" for t, s in [(0, 0), (0, 2), (0, 1), (1, 0)]]
        lines += ["x [dask r=7 t=1 s=0] y", "x [dask r=6 t=1 s=1] y", "other"]
        path = tmp_path / "out.log"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        counts = _read_back(path, run=7, tasks=2, records=3)
        assert counts == {"written": 4, "lost": 2, "duplicated": 1, "reordered": 1}

    @pytest.mark.timeout(300)
    def test_every_way_runs_on_a_real_cluster_and_loses_nothing_here(self) -> None:
        """--dask starts a scheduler and nanny workers, runs logfunnel.dask (Unix socket, TCP,
        line mode) and forward_logging, reads every output back, and takes the scheduler's CPU."""
        pytest.importorskip("distributed")
        from bench._dask import WAYS, dask_lines, measure_dask

        result = measure_dask(workers=2, records=2000, size=100, repeat=1)
        rows = {row["way"]: row for row in result["rows"]}
        assert list(rows) == WAYS
        for row in rows.values():
            (run,) = row["runs"]
            assert run["written"] == 4000
            assert run["lost"] == run["duplicated"] == run["reordered"] == 0
        # Each forwarded record passes through the scheduler: its CPU is measured.
        assert rows["forward_logging"]["runs"][0]["cpu_s"]["scheduler"] > 0
        assert len(dask_lines(result)) == 2 + len(WAYS)
