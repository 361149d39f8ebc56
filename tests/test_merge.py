"""logfunnel merge: per-process files into one log by record time, streaming and stable."""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import logfunnel
from logfunnel._cli import main
from logfunnel._files import _merge
from logfunnel._files._merge import DEFAULT_MAX_OPEN, merge_files

T0 = 1_700_000_000.0


def stamp(t: float) -> str:
    """The record start ProcessFileHandler writes for time ``t``."""
    handler = logfunnel.ProcessFileHandler("{pid}.unused", delay=True)
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "", (), None)
    record.created = t
    return handler.line(record, "").split(" ")[0]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def merge_text(paths: list[Path], **kwargs: int) -> tuple[str, list[str], _merge.MergeResult]:
    out = io.BytesIO()
    said: list[str] = []
    result = merge_files([str(p) for p in paths], out, report=said.append, **kwargs)
    return out.getvalue().decode(), said, result


def process_file(path: Path, worker: int, count: int, step: float, offset: float) -> Path:
    """``count`` records as ProcessFileHandler writes them, every 97th with a continuation."""
    handler = logfunnel.ProcessFileHandler(str(path.parent / "{pid}.unused"), delay=True)
    with path.open("w", encoding="utf-8") as out:
        for n in range(count):
            msg = f"W{worker} R{n}" + ("\n  more" if n % 97 == 0 else "")
            record = logging.LogRecord("app", logging.INFO, __file__, 1, msg, (), None)
            record.created = T0 + offset + n * step
            out.write(handler.line(record, handler.format(record)))
            handler._seq += 1
    return path


class TestOrder:
    def test_records_come_out_in_time_order(self, tmp_path: Path) -> None:
        """Three interleaved files give one log sorted by record time."""
        a = write(tmp_path / "a", [f"{stamp(T0 + 1)} 0 a1", f"{stamp(T0 + 4)} 1 a4"])
        b = write(tmp_path / "b", [f"{stamp(T0 + 2)} 0 b2", f"{stamp(T0 + 5)} 1 b5"])
        c = write(tmp_path / "c", [f"{stamp(T0 + 0.5)} 0 c0", f"{stamp(T0 + 3)} 1 c3"])
        text, said, result = merge_text([a, b, c])
        assert [line.split()[-1] for line in text.splitlines()] == [
            "c0",
            "a1",
            "b2",
            "c3",
            "a4",
            "b5",
        ]
        assert (said, result.records, result.ok) == ([], 6, True)

    def test_equal_times_keep_input_order_then_file_order(self, tmp_path: Path) -> None:
        """Ties go to the earlier input on the command line, and inside a file to file order."""
        t = stamp(T0)
        a = write(tmp_path / "a", [f"{t} 0 a-first", f"{t} 1 a-second"])
        b = write(tmp_path / "b", [f"{t} 0 b-first", f"{t} 1 b-second"])
        text, _, _ = merge_text([b, a])
        assert [line.split()[-1] for line in text.splitlines()] == [
            "b-first",
            "b-second",
            "a-first",
            "a-second",
        ]

    def test_a_process_whose_clock_stepped_back_keeps_its_own_order(self, tmp_path: Path) -> None:
        """A file out of time order stays in file order, and the merge says where."""
        a = write(tmp_path / "a", [f"{stamp(T0 + 5)} 0 a5", f"{stamp(T0 + 3)} 1 a3"])
        b = write(tmp_path / "b", [f"{stamp(T0 + 4)} 0 b4"])
        text, said, result = merge_text([a, b])
        assert [line.split()[-1] for line in text.splitlines()] == ["b4", "a5", "a3"]
        assert result.out_of_order == 1
        assert result.ok
        assert len(said) == 1
        assert said[0].startswith(f"{a}:2: record is earlier than the one before it")

    @settings(max_examples=60, deadline=None)
    @given(
        files=st.lists(
            st.lists(st.tuples(st.integers(0, 20), st.integers(0, 2)), min_size=0, max_size=12),
            min_size=1,
            max_size=5,
        )
    )
    def test_the_merge_is_a_stable_sort_by_time(self, files: list[list[tuple[int, int]]]) -> None:
        """For any inputs in time order: the output is every record, stably sorted by time."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            expected = []
            for index, records in enumerate(files):
                lines = []
                for seq, (t, extra) in enumerate(sorted(records, key=lambda r: r[0])):
                    body = [f"{stamp(T0 + t / 8)} {seq} f{index} r{seq}"]
                    body += [f"  f{index} r{seq} line {k}" for k in range(extra)]
                    lines += body
                    expected.append((t, index, seq, body))
                paths.append(write(Path(tmp) / f"f{index}", lines))
            text, said, result = merge_text(paths)
        expected.sort(key=lambda e: (e[0], e[1], e[2]))
        assert text.splitlines() == [line for *_, body in expected for line in body]
        assert (said, result.records) == ([], len(expected))


class TestRecordsStayWhole:
    def test_continuation_lines_travel_with_their_record(self, tmp_path: Path) -> None:
        """A traceback under a record stays under it, even when another file's record is between."""
        a = write(
            tmp_path / "a",
            [
                f"{stamp(T0 + 1)} 0 ERROR failed",
                "Traceback (most recent call last):",
                ' File "x.py", line 1',
                f" {stamp(T0 + 2)} 9 looks like a record start",
                "ValueError: boom",
                f"{stamp(T0 + 3)} 1 a3",
            ],
        )
        b = write(tmp_path / "b", [f"{stamp(T0 + 2)} 0 b2"])
        text, _, _ = merge_text([a, b])
        assert text.splitlines() == [
            f"{stamp(T0 + 1)} 0 ERROR failed",
            "Traceback (most recent call last):",
            ' File "x.py", line 1',
            f" {stamp(T0 + 2)} 9 looks like a record start",
            "ValueError: boom",
            f"{stamp(T0 + 2)} 0 b2",
            f"{stamp(T0 + 3)} 1 a3",
        ]

    def test_a_file_cut_short_inside_a_line_does_not_glue_records(self, tmp_path: Path) -> None:
        """A last line without its newline still ends before the next record."""
        a = tmp_path / "a"
        a.write_text(f"{stamp(T0 + 1)} 0 a1\n{stamp(T0 + 2)} 1 a2 cut", encoding="utf-8")
        b = write(tmp_path / "b", [f"{stamp(T0 + 3)} 0 b3"])
        text, _, result = merge_text([a, b])
        assert text.splitlines() == [
            f"{stamp(T0 + 1)} 0 a1",
            f"{stamp(T0 + 2)} 1 a2 cut",
            f"{stamp(T0 + 3)} 0 b3",
        ]
        assert result.records == 3

    @pytest.mark.parametrize("chunk", [40, 41, 64])
    def test_lines_longer_than_a_chunk_are_copied_whole(
        self, chunk: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Lines are read in pieces; a record start inside a long line is not taken for one.

        (A chunk is always longer than a record start: 64 KiB against about 40 bytes.)
        """
        monkeypatch.setattr(_merge, "CHUNK", chunk)
        long_first = f"{stamp(T0 + 1)} 0 " + "x" * 3 + f"{stamp(T0 + 9)} 5 " + "y" * 50
        long_cont = "z" * (chunk - 1) + f"{stamp(T0 + 0.1)} 3 inside"
        a = write(tmp_path / "a", [long_first, long_cont, f"{stamp(T0 + 3)} 1 a3"])
        b = write(tmp_path / "b", [f"{stamp(T0 + 2)} 0 b2"])
        text, said, result = merge_text([a, b])
        assert text.splitlines() == [
            long_first,
            long_cont,
            f"{stamp(T0 + 2)} 0 b2",
            f"{stamp(T0 + 3)} 1 a3",
        ]
        assert (said, result.records) == ([], 3)

    def test_bytes_pass_through_unchanged(self, tmp_path: Path) -> None:
        """Invalid UTF-8 and astral characters come out byte for byte."""
        a = tmp_path / "a"
        a.write_bytes(f"{stamp(T0)} 0 ".encode() + b"\xff\xfe \xf0\x9d\x84\x9e\r\n")
        out = io.BytesIO()
        merge_files([str(a)], out)
        assert out.getvalue() == a.read_bytes()


class TestUnplacedLines:
    def test_lines_before_the_first_record_are_reported_not_merged(self, tmp_path: Path) -> None:
        """They belong to no record: stderr names the file and lines, and the exit code is 1."""
        a = write(tmp_path / "a", ["stray one", "stray two", f"{stamp(T0 + 1)} 0 a1"])
        b = write(tmp_path / "b", [f"{stamp(T0 + 2)} 0 b2"])
        out = tmp_path / "out.log"
        result = subprocess.run(
            [sys.executable, "-m", "logfunnel", "merge", str(a), str(b), "-o", str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 1
        assert f"{a}: lines 1-2 come before its first record; not placed. First: 'stray one'" in (
            result.stderr
        )
        assert "2 records from 2 files" in result.stderr
        assert "2 lines could not be placed" in result.stderr
        assert out.read_text().splitlines() == [f"{stamp(T0 + 1)} 0 a1", f"{stamp(T0 + 2)} 0 b2"]

    def test_a_file_in_another_format_is_named(self, tmp_path: Path) -> None:
        """A file with no record start at all is reported as such."""
        a = write(tmp_path / "a", ["2024-01-01 12:00:00,123 INFO plain logging line"])
        _, said, result = merge_text([a])
        assert said == [
            f"{a}: line 1 hold no record start (is it a ProcessFileHandler file?); not placed. "
            "First: '2024-01-01 12:00:00,123 INFO plain logging line'"
        ]
        assert (result.unplaced, result.ok) == (1, False)


class TestManyInputs:
    def test_more_inputs_than_max_open_merge_the_same(self, tmp_path: Path) -> None:
        """Merging in groups through temporary files gives the same bytes as one pass."""
        paths = [
            write(
                tmp_path / f"f{i}",
                [f"{stamp(T0 + (n * 7 + i) % 5)} {n} f{i} r{n}" for n in range(3)],
            )
            for i in range(7)
        ]
        for path in paths:  # each input in time order, ties included
            lines = sorted(path.read_text().splitlines(), key=lambda line: line.split()[0])
            write(path, lines)
        one_pass, _, _ = merge_text(paths)
        grouped, said, result = merge_text(paths, max_open=2)
        assert grouped == one_pass
        assert (said, result.records, result.files) == ([], 21, 7)


class TestRepeatedInputs:
    @pytest.mark.parametrize("max_open", [DEFAULT_MAX_OPEN, 2])
    def test_a_file_given_twice_is_merged_once(self, max_open: int, tmp_path: Path) -> None:
        """Inputs named twice (as overlapping globs do) give each record once and are reported."""
        a = write(tmp_path / "a", [f"{stamp(T0 + 1)} 0 a1", f"{stamp(T0 + 3)} 1 a3"])
        b = write(tmp_path / "b", [f"{stamp(T0 + 2)} 0 b2"])
        once, _, _ = merge_text([a, b])
        text, said, result = merge_text([a, b, a, b], max_open=max_open)
        assert text == once
        assert said == [
            f"{a}: given more than once; merged once",
            f"{b}: given more than once; merged once",
        ]
        assert (result.records, result.files, result.repeated, result.ok) == (3, 2, 2, True)

    def test_the_same_file_through_another_path_is_merged_once(self, tmp_path: Path) -> None:
        """A symlink, a hard link or another spelling of an input's path is the same file: once."""
        a = write(tmp_path / "a", [f"{stamp(T0 + 1)} 0 a1"])
        (tmp_path / "sub").mkdir()
        symlink, hardlink = tmp_path / "symlink", tmp_path / "hardlink"
        symlink.symlink_to(a)
        os.link(a, hardlink)
        respelled = tmp_path / "sub" / ".." / "a"
        text, said, result = merge_text([a, symlink, hardlink, respelled])
        assert text == a.read_text()
        assert said == [
            f"{p}: the same file as {a}; merged once" for p in (symlink, hardlink, respelled)
        ]
        assert (result.records, result.files, result.repeated) == (1, 1, 3)

    def test_without_inode_numbers_files_are_told_apart_by_resolved_path(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Where the filesystem reports inode 0 for every file, distinct files are all merged."""
        real_stat = os.stat

        def stat_without_inodes(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
            st = real_stat(path, *args, **kwargs)
            if not str(path).startswith(str(tmp_path)):
                return st
            return os.stat_result((st.st_mode, 0, *st[2:10]))

        a = write(tmp_path / "a", [f"{stamp(T0 + 1)} 0 a1"])
        b = write(tmp_path / "b", [f"{stamp(T0 + 2)} 0 b2"])
        (tmp_path / "symlink").symlink_to(a)
        monkeypatch.setattr(_merge.os, "stat", stat_without_inodes)
        text, said, result = merge_text([a, b, tmp_path / "symlink"])
        assert text.splitlines() == [f"{stamp(T0 + 1)} 0 a1", f"{stamp(T0 + 2)} 0 b2"]
        assert said == [f"{tmp_path / 'symlink'}: the same file as {a}; merged once"]
        assert (result.files, result.repeated) == (2, 1)

    def test_the_command_names_the_repeats_and_counts_them(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`logfunnel merge a* a*`: each record once in OUT; each repeat named on stderr."""
        a = write(tmp_path / "a", [f"{stamp(T0 + 1)} 0 a1"])
        b = write(tmp_path / "b", [f"{stamp(T0 + 2)} 0 b2"])
        out = tmp_path / "out.log"
        assert main(["merge", str(a), str(b), str(a), str(b), "-o", str(out)]) == 0
        assert capsys.readouterr().err.splitlines() == [
            f"logfunnel merge: {a}: given more than once; merged once",
            f"logfunnel merge: {b}: given more than once; merged once",
            f"logfunnel merge: 2 records from 2 files -> {out}; 2 repeated inputs merged once "
            "(listed above)",
        ]
        assert out.read_text().splitlines() == [f"{stamp(T0 + 1)} 0 a1", f"{stamp(T0 + 2)} 0 b2"]


class TestCommand:
    @pytest.mark.parametrize(
        "command",
        [["logfunnel"], [sys.executable, "-m", "logfunnel"]],
        ids=["console-script", "python-m"],
    )
    def test_merge_files_into_out(self, command: list[str], tmp_path: Path) -> None:
        """`logfunnel merge FILES -o OUT` writes the merge and a summary line on stderr."""
        if command[0] == "logfunnel":
            found = shutil.which("logfunnel") or str(Path(sys.executable).parent / "logfunnel")
            command = [found]
        a = process_file(tmp_path / "a.log", 0, 300, 0.002, 0.0)
        b = process_file(tmp_path / "b.log", 1, 300, 0.002, 0.001)
        out = tmp_path / "out.log"
        result = subprocess.run(
            [*command, "merge", str(a), str(b), "-o", str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert (result.returncode, result.stderr) == (
            0,
            f"logfunnel merge: 600 records from 2 files -> {out}\n",
        )
        records = [line.split()[-1] for line in out.read_text().splitlines() if line[0] != " "]
        assert records == [f"R{n}" for n in range(300) for _ in (0, 1)]
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".merge-")] == []

    def test_without_output_the_merge_goes_to_stdout(
        self, tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]
    ) -> None:
        """No -o: the merged log is written to standard output."""
        a = write(tmp_path / "a", [f"{stamp(T0 + 2)} 0 a2"])
        b = write(tmp_path / "b", [f"{stamp(T0 + 1)} 0 b1"])
        assert main(["merge", str(a), str(b)]) == 0
        assert capfdbinary.readouterr().out.decode().splitlines() == [
            f"{stamp(T0 + 1)} 0 b1",
            f"{stamp(T0 + 2)} 0 a2",
        ]

    def test_an_output_that_is_also_an_input_is_refused(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Merging into one of the inputs would destroy it: exit code 2, input untouched."""
        a = write(tmp_path / "a", [f"{stamp(T0)} 0 a"])
        b = write(tmp_path / "b", [f"{stamp(T0)} 0 b"])
        before = a.read_bytes()
        assert main(["merge", str(a), str(b), "-o", str(a)]) == 2
        assert "is also an input" in capsys.readouterr().err
        assert a.read_bytes() == before

    def test_a_missing_input_is_an_error_before_anything_is_written(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A typo in a file name gives exit code 2 and no output file."""
        a = write(tmp_path / "a", [f"{stamp(T0)} 0 a"])
        out = tmp_path / "out.log"
        assert main(["merge", str(a), str(tmp_path / "nope"), "-o", str(out)]) == 2
        assert "not a file" in capsys.readouterr().err
        assert not out.exists()

    def test_an_output_in_a_missing_directory_is_an_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A wrong output path gives exit code 2 and a message, not a traceback."""
        a = write(tmp_path / "a", [f"{stamp(T0)} 0 a"])
        assert main(["merge", str(a), "-o", str(tmp_path / "nope" / "out.log")]) == 2
        assert "no such directory" in capsys.readouterr().err

    def test_a_reader_that_stops_early_ends_the_merge_quietly(self, tmp_path: Path) -> None:
        """`logfunnel merge ... | head`: the merge stops at the closed pipe, without a traceback."""
        a = process_file(tmp_path / "a.log", 0, 20_000, 0.001, 0.0)
        proc = subprocess.Popen(
            [sys.executable, "-m", "logfunnel", "merge", str(a)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        assert proc.stdout.read(100).startswith(stamp(T0)[:10].encode())
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(60) == 1
        assert "Traceback" not in err


def peak_merge_memory(tmp_path: Path, files: int, count: int) -> int:
    """Peak bytes allocated by one merge of ``files`` x ``count`` records (tracemalloc)."""
    directory = tmp_path / f"{files}x{count}"
    directory.mkdir()
    paths = [
        str(process_file(directory / f"p{i}.log", i, count, 0.001, i / 10_000))
        for i in range(files)
    ]
    with open(os.devnull, "wb") as sink:
        tracemalloc.start()
        try:
            result = merge_files(paths, sink)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.records == files * count
    return peak


class TestMemory:
    def test_memory_stays_flat_as_the_input_grows_tenfold(self, tmp_path: Path) -> None:
        """Peak memory for 4 x 20,000 records is within 10% of that for 4 x 2,000."""
        small = peak_merge_memory(tmp_path, 4, 2_000)
        large = peak_merge_memory(tmp_path, 4, 20_000)
        assert large < small * 1.1 + 16 * 1024, (small, large)

    @pytest.mark.stress
    def test_stress_resident_memory_flat_for_ten_times_the_records(self, tmp_path: Path) -> None:
        """The merge process's peak RSS for 8 x 200,000 records stays within 2 MiB of 8 x 20,000."""
        rss = []
        for count in (20_000, 200_000):
            directory = tmp_path / str(count)
            directory.mkdir()
            paths = [
                str(process_file(directory / f"p{i}.log", i, count, 0.001, i / 10_000))
                for i in range(8)
            ]
            code = (
                "import resource, sys; from logfunnel._cli import main; "
                "code = main(sys.argv[1:]); "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)"
            )
            done = subprocess.run(
                [sys.executable, "-c", code, "merge", *paths, "-o", str(directory / "out.log")],
                capture_output=True,
                text=True,
                check=True,
            )
            assert f"{8 * count} records from 8 files" in done.stderr
            rss.append(int(done.stdout.split()[-1]))
        assert rss[1] < rss[0] + 2048, rss  # ru_maxrss is in KiB on Linux
