"""The read-back audit the demo, the benchmark and the tests share: each kind of damage counts."""

from __future__ import annotations

import re
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from _strategy_workers import message
from _support import audit as support_audit

from logfunnel._audit import (
    SAMPLE_CHARS,
    SAMPLE_LINES,
    Audit,
    RecordShape,
    numbered_set,
)

#: A record as these tests write it: a marker, then a body that must be exact.
SHAPE = RecordShape(
    re.compile(r"rec (?P<worker>\d+) (?P<number>\d+)"), lambda w, n: f"rec {w} {n} body"
)


def line(worker: int, number: int) -> str:
    return f"2024-01-01 host[1] INFO rec {worker} {number} body"


def write(path: Path, keys: list[tuple[int, int]]) -> Path:
    path.write_text("".join(line(w, n) + "\n" for w, n in keys), encoding="utf-8")
    return path


def audit_of(lines: list[str], **options: Any) -> Audit:
    result = Audit(SHAPE, order="across_files", **options)
    for text in lines:
        result.add(text)
    return result


class TestDamage:
    def test_a_clean_log_is_clean(self, tmp_path: Path) -> None:
        """Every record once, in order: nothing lost, doubled, reordered or torn."""
        log = write(tmp_path / "a.log", [(w, n) for n in range(4) for w in range(2)])
        result = Audit(SHAPE, order="across_files", workers=2, records=4).read([log])
        summary = result.summary()
        assert (summary.expected, summary.written, summary.ok) == (8, 8, True)
        assert summary.bytes == log.stat().st_size

    def test_a_missing_record_is_lost(self) -> None:
        """Record (1, 2) never arrives: it is missing, and the summary counts it lost."""
        result = audit_of([line(0, 0), line(0, 1), line(0, 2), line(1, 0), line(1, 1)])
        assert result.missing(2, 3) == [(1, 2)]
        # Worker 0's record 1 and all of worker 1's, who never wrote.
        bounded = audit_of([line(0, 0), line(0, 2)], workers=2, records=3)
        assert bounded.summary().lost == 4

    def test_a_doubled_record_is_duplicated_not_reordered(self) -> None:
        """Record 1 twice in a row is one duplicate; the sequence did not go backwards."""
        result = audit_of([line(0, 0), line(0, 1), line(0, 1), line(0, 2)])
        assert result.doubled() == {(0, 1): 2}
        assert (result.duplicated, result.written) == (1, 4)
        assert not result.reordered

    def test_a_sequence_going_backwards_is_reordered(self) -> None:
        """0, 3, 1, 2, 4: records 1 and 2 arrive after 3 (the highest seen is what counts)."""
        result = audit_of([line(0, 0), line(0, 3), line(0, 1), line(0, 2), line(0, 4)])
        assert result.reordered.count == 2
        assert result.reordered.lines == [line(0, 1), line(0, 2)]
        assert result.missing(1, 5) == []
        assert result.doubled() == {}

    def test_order_across_files_or_per_file_is_the_callers_choice(self, tmp_path: Path) -> None:
        """Record 2 in an older file and record 1 in a newer one: reordered across the set,
        not within any one file."""
        files = [write(tmp_path / "a.log", [(0, 0), (0, 2)]), write(tmp_path / "b.log", [(0, 1)])]
        across = Audit(SHAPE, order="across_files").read(files)
        per_file = Audit(SHAPE, order="per_file").read(files)
        assert (across.reordered.count, per_file.reordered.count) == (1, 0)
        with pytest.raises(ValueError, match="order"):
            Audit(SHAPE, order="sideways")  # type: ignore[arg-type]

    def test_a_torn_record_is_torn_and_not_written(self) -> None:
        """A record cut short, or run into by the next one, is torn: it is not counted present."""
        cut = line(0, 1)[:-3]
        run_into = line(0, 2)[:-2] + line(0, 3)
        result = audit_of([line(0, 0), cut, run_into], workers=1, records=4)
        assert result.torn.lines == [cut, run_into]
        assert result.missing() == [(0, 1), (0, 2), (0, 3)]
        summary = result.summary()
        assert (summary.torn, summary.written, summary.lost) == (2, 1, 3)

    def test_a_marker_without_its_identity_is_torn(self) -> None:
        """A shape whose worker and number groups are optional reports a bare marker as torn."""
        shape = RecordShape(re.compile(r"\[rec(?: (?P<worker>\d+) (?P<number>\d+))?"))
        result = Audit(shape, order="per_file")
        result.add("[rec 0 0")
        result.add("[rec 0 x")
        assert (result.written, result.torn.lines) == (1, ["[rec 0 x"])

    def test_a_record_outside_the_range_logged_is_torn(self) -> None:
        """Given the range, worker 2 or record 9 was never logged: its line is damage."""
        result = audit_of([line(2, 0), line(0, 9), line(0, 0)], workers=2, records=3)
        assert (result.torn.count, result.written) == (2, 1)

    @pytest.mark.parametrize("bounded", [True, False], ids=["range-given", "no-range"])
    def test_a_negative_identity_is_torn(self, bounded: bool) -> None:
        """A shape of the caller's own may return anything: a negative number is no record
        (it would index a worker's counters from the end)."""
        found = iter([(0, 0), (0, -1), (-1, 0)])
        options: dict[str, Any] = {"workers": 1, "records": 2} if bounded else {}
        result = Audit(lambda _: next(found), order="per_file", **options)
        for _ in range(3):
            result.add("a line")
        assert (result.written, result.torn.count, dict(result.counts)) == (1, 2, {(0, 0): 1})

    def test_undecodable_bytes_are_torn_not_an_error(self, tmp_path: Path) -> None:
        """A record cut inside a UTF-8 sequence reads as a torn line, not UnicodeDecodeError."""
        log = tmp_path / "a.log"
        log.write_bytes(line(0, 0).encode() + b"\xe4\xb8\n" + line(0, 1).encode() + b"\n")
        result = Audit(SHAPE, order="across_files").read([log])
        assert (result.torn.count, result.written) == (1, 1)


class TestLinesThatAreNotRecords:
    NOTICE = "2024-01-01 logfunnel-collector[7] WARNING logfunnel: sink moved to a thread"

    def test_lines_without_a_marker_are_ignored_by_default(self) -> None:
        """A log with other lines in it (a sink's own, a notice): only records are read."""
        result = audit_of([line(0, 0), "some other line", self.NOTICE])
        assert (result.written, result.torn.count) == (1, 0)

    def test_only_records_makes_a_line_without_a_marker_torn(self) -> None:
        """In a log meant to hold only records, the tail of a cut record is torn too."""
        result = audit_of([line(0, 0), "0 body"], only_records=True)
        assert result.torn.lines == ["0 body"]

    def test_keep_passes_over_the_collectors_notices(self) -> None:
        """Lines ``keep`` rejects are not read at all, even where every line must be a record."""
        result = audit_of(
            [line(0, 0), self.NOTICE, line(0, 1)],
            only_records=True,
            keep=lambda text: "logfunnel-collector[" not in text,
        )
        assert (result.written, result.torn.count) == (2, 0)

    def test_a_shape_without_a_message_counts_the_marker_alone(self) -> None:
        """The demo's shape: a marker is a record, whatever follows it."""
        shape = RecordShape(re.compile(r"rec (?P<worker>\d+) (?P<number>\d+)"))
        result = Audit(shape, order="across_files")
        result.add(line(0, 0) + " and more")
        assert (result.written, result.torn.count) == (1, 0)


class TestWhatItKeeps:
    def test_the_sample_of_offending_lines_is_bounded(self) -> None:
        """A log full of damage is counted in full, but only a few lines of it are kept, cut."""
        long_torn = [line(0, n) + "x" * 1000 for n in range(SAMPLE_LINES * 3)]
        result = audit_of(long_torn)
        assert result.torn.count == SAMPLE_LINES * 3
        assert len(result.torn.lines) == SAMPLE_LINES
        assert {len(kept) for kept in result.torn.lines} == {SAMPLE_CHARS}
        assert "count=30" in repr(result.torn)

    def test_counts_is_a_mapping_of_the_records_read(self) -> None:
        """The tests' questions: a record's count, membership, size, items in order."""
        result = audit_of([line(1, 2), line(0, 0), line(1, 2)])
        assert result.counts[(1, 2)] == 2
        assert (0, 0) in result.counts
        assert (0, 1) not in result.counts
        assert (5, 0) not in result.counts
        assert len(result.counts) == 2
        assert sorted(result.counts.items()) == [((0, 0), 1), ((1, 2), 2)]
        with pytest.raises(KeyError):
            result.counts[(0, 1)]

    def test_a_count_stops_at_255_and_duplicated_does_not(self) -> None:
        """A byte per record: its count saturates, the duplicate total stays exact."""
        result = audit_of([line(0, 0)] * 300)
        assert result.counts[(0, 0)] == 255
        assert result.duplicated == 299

    def test_counting_a_record_costs_about_a_byte(self) -> None:
        """80,000 records read back take well under 400 kB (a dict entry each would take
        some 8 MB): the benchmark audits big logs in the process whose memory it measures."""
        records = 20_000
        lines = [line(w, n) for w in range(4) for n in range(records)]
        for bounded in (True, False):
            options: dict[str, Any] = {"workers": 4, "records": records} if bounded else {}
            tracemalloc.start()
            try:
                result = audit_of(lines, **options)
                held = tracemalloc.get_traced_memory()[0]
            finally:
                tracemalloc.stop()
            assert len(result.counts) == 4 * records
            assert held < 400_000, (bounded, held)

    def test_a_summary_needs_the_range_that_was_logged(self) -> None:
        """Lost is counted against what was logged: an audit without the range cannot say."""
        with pytest.raises(ValueError, match="how many"):
            audit_of([line(0, 0)]).summary()
        with pytest.raises(ValueError, match="both"):
            Audit(SHAPE, order="per_file", workers=2)


class TestNumberedSet:
    def test_backups_come_oldest_first(self, tmp_path: Path) -> None:
        """app.log.10 is older than app.log.2, and app.log (the newest) comes last."""
        for name in ("app.log", "app.log.1", "app.log.2", "app.log.10", "app.log.old"):
            (tmp_path / name).write_text("")
        names = [p.name for p in numbered_set(tmp_path / "app.log")]
        assert names == ["app.log.10", "app.log.2", "app.log.1", "app.log"]

    def test_a_rotated_set_reads_as_one_sequence(self, tmp_path: Path) -> None:
        """Records 0-1 in the backup and 2-3 in the current file: in order, none lost."""
        write(tmp_path / "app.log.1", [(0, 0), (0, 1)])
        write(tmp_path / "app.log", [(0, 2), (0, 3)])
        audit = Audit(SHAPE, order="across_files", workers=1, records=4)
        assert audit.read(numbered_set(tmp_path / "app.log")).summary().ok


class TestTheSuitesAudit:
    """``_support.audit``, which the strategy and rotation tests rely on to see damage."""

    NOTICE = "2024-01-01 00:00:00,000 logfunnel-collector[7] WARNING logfunnel: sink moved"

    def test_every_line_is_a_whole_record_or_a_notice(self, tmp_path: Path) -> None:
        """Both halves of a record cut in two are torn, a changed byte is torn, the collector's
        notice is passed over."""
        whole, cut, changed = message(0, 0), message(0, 1), message(0, 2)
        log = tmp_path / "a.log"
        lines = [whole, cut[:40], cut[40:], changed.replace("end", "emd"), self.NOTICE]
        log.write_text("\n".join(lines) + "\n", encoding="utf-8")
        result = support_audit([log])
        assert result.torn.lines == lines[1:4]
        assert sorted(result.counts) == [(0, 0)]

    def test_a_rotated_set_is_one_sequence(self, tmp_path: Path) -> None:
        """Record 1 in the newer file after record 2 in the older one is reordered."""
        older, newer = tmp_path / "a.log.1", tmp_path / "a.log"
        older.write_text(f"{message(0, 0)}\n{message(0, 2)}\n", encoding="utf-8")
        newer.write_text(f"{message(0, 1)}\n", encoding="utf-8")
        result = support_audit(numbered_set(newer))
        assert result.reordered.lines == [message(0, 1)]
