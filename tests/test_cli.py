"""The command line: `logfunnel demo` end to end, and its audit; what `logfunnel bench` does."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from logfunnel import _cli
from logfunnel._audit import numbered_set
from logfunnel._cli import main
from logfunnel._cli._demo import audit_files


class TestDemo:
    @pytest.mark.parametrize(
        "command",
        [["logfunnel"], [sys.executable, "-m", "logfunnel"]],
        ids=["console-script", "python-m"],
    )
    def test_demo_runs_and_reports_no_loss(self, command: list[str], tmp_path: Path) -> None:
        """The demo (10 spawn workers by default) ends with a summary line and exit code 0."""
        if command[0] == "logfunnel" and shutil.which("logfunnel") is None:
            command = [str(Path(sys.executable).parent / "logfunnel")]
        result = subprocess.run(
            [*command, "demo", "--dir", str(tmp_path), "--records", "300"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        summary = result.stdout.strip().splitlines()[-1]
        assert summary.startswith(
            "logfunnel demo: 10 workers (spawn), 3000 records expected, 3000 written, "
            "0 lost, 0 duplicated, 0 out of order"
        )
        assert result.stderr.count("finished: 300 records sent") == 10

    def test_demo_under_each_start_method(
        self, start_method: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The demo's promise holds under fork, spawn and forkserver."""
        code = main(
            [
                "demo",
                "--workers",
                "3",
                "--records",
                "200",
                "--method",
                start_method,
                "--dir",
                str(tmp_path),
                "--max-bytes",
                "4096",
            ]
        )
        out = capsys.readouterr().out
        assert code == 0, out
        assert "600 records expected, 600 written, 0 lost, 0 duplicated" in out
        assert len(numbered_set(tmp_path / "demo.log")) > 3


class TestAudit:
    def test_audit_reads_the_rotated_set_as_one_sequence(self, tmp_path: Path) -> None:
        """The demo's audit counts its records across the set: record 1 in the newer file after
        record 2 in the older one is out of order; the workers' "finished" lines are not records."""
        older = tmp_path / "demo.log.1"
        newer = tmp_path / "demo.log"
        older.write_text("x demo worker 0 record 0\nx demo worker 0 record 2\n")
        newer.write_text(
            "x demo worker 0 record 1\nx demo worker 0 record 2\nx demo worker 1 record 0\n"
            "x demo worker 1 finished: 3 records sent\n"
        )
        audit = audit_files(numbered_set(newer), workers=2, records=3)
        assert (
            audit.expected,
            audit.written,
            audit.lost,
            audit.duplicated,
            audit.reordered,
            audit.torn,
        ) == (6, 5, 2, 1, 1, 0)
        assert not audit.ok

    def test_bad_arguments_are_refused(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--workers 0 is an error with exit code 2, not an empty success."""
        assert main(["demo", "--workers", "0"]) == 2
        assert "--workers must be at least 1" in capsys.readouterr().err


#: Whether the logfunnel under test is this clone's (an editable install), found
#: independently of the function under test.
FROM_CLONE = (Path(_cli.__file__).resolve().parents[3] / "bench" / "__main__.py").is_file()


class TestBench:
    """The benchmark is the repository's bench/, not the package's; the CLI only points to it."""

    def test_the_clone_is_recognised(self) -> None:
        """Run from a clone, the CLI finds the clone's root (and an install has none)."""
        root = _cli._source_root()
        assert (root is not None) == FROM_CLONE
        assert root is None or (root / "bench" / "__main__.py").is_file()

    @pytest.mark.skipif(not FROM_CLONE, reason="logfunnel is not run from a clone")
    def test_clone_runs_the_repository_bench(self, capsys: pytest.CaptureFixture[str]) -> None:
        """From a clone, `logfunnel bench` hands its arguments to bench/ and keeps its exit code."""
        assert main(["bench", "--processes", "0"]) == 2
        captured = capsys.readouterr()
        assert captured.err.startswith("logfunnel bench: --processes, --records and --repeat")
        assert captured.out == ""

    @pytest.mark.skipif(not FROM_CLONE, reason="logfunnel is not run from a clone")
    def test_clone_help_is_the_bench_help(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`logfunnel bench --help` is the repository bench's own help, every option in it."""
        with pytest.raises(SystemExit) as exited:
            main(["bench", "--help"])
        assert exited.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: logfunnel bench ")
        assert "--latency-seconds" in out
        assert "--plot PATH" in out

    def test_installed_package_says_where_the_bench_lives(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Outside a clone, one line names the repository's bench/ and its command; exit code 2."""
        monkeypatch.setattr(_cli, "_source_root", lambda: None)
        assert main(["bench", "--quick"]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.count("\n") == 1
        assert "python -m bench" in captured.err
        assert "bench/README.md" in captured.err

    def test_other_commands_leave_the_bench_alone(self, tmp_path: Path) -> None:
        """Building the parser imports no bench module and leaves sys.path as it was;
        the top-level help says that the bench is not in the package."""
        script = (
            "import sys\n"
            "before = list(sys.path)\n"
            "from logfunnel._cli import build_parser\n"
            "text = build_parser().format_help()\n"
            "assert 'bench' not in sys.modules, 'bench imported'\n"
            "assert sys.path == before, 'sys.path changed'\n"
            "print(text)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        help_text = " ".join(result.stdout.split())
        assert "bench run the repository's benchmark" in help_text
        assert "it is not in the package" in help_text
