"""JSON lines: ``logfunnel.JSONFormatter`` in one process and behind a funnel.

Every line must be one object a strict parser accepts, whatever the record
holds; the producers format it, so line mode stays on; and a file written
by workers through a funnel holds the objects that the same sink writes in
one process, but for the values that belong to the process that logged.
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import logging.config
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import _json_workers as jw
import pytest
from _support import JOIN_TIMEOUT
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import logfunnel
from logfunnel._json import FIELDS
from logfunnel._protocol._codec import faithful, safe_str
from logfunnel._sinks._config import SinkConfig
from logfunnel._sinks._writer import text_spec

#: What belongs to the process (and thread) that made a record: the rest must match.
PER_PROCESS = ("process", "processName", "thread", "threadName")


def strict(line: str) -> Any:
    """``line`` parsed as RFC 8259 JSON: no NaN or Infinity, no lone surrogate anywhere."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    value = json.loads(line, parse_constant=refuse)
    for text in _strings(value):
        text.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError
    return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in [key, *_strings(item)]]
    return []


def format_one(record: logging.LogRecord, formatter: logging.Formatter | None = None) -> str:
    """What a ``StreamHandler`` with ``formatter`` writes for ``record``: one line."""
    stream = io.StringIO()
    sink = logging.StreamHandler(stream)
    sink.setFormatter(formatter or logfunnel.JSONFormatter())
    sink.handle(record)
    text = stream.getvalue()
    assert text.endswith("\n")
    assert text.count("\n") == 1, text[:300]
    # Also for readers that split at U+2028 and the like (str.splitlines).
    assert len(text.splitlines()) == 1, text[:300]
    return text[:-1]


def record(msg: object = "m", args: Any = (), **extra: Any) -> logging.LogRecord:
    return logging.getLogger("t").makeRecord(
        "t", logging.INFO, __file__, 1, msg, args, None, extra=extra or None
    )


#: Names ``extra=`` may not use: LogRecord's own attributes (``taskName`` is one from
#: Python 3.12; logfunnel takes it for one on 3.11 too).
RESERVED = {
    *logging.LogRecord("", 0, "", 0, "", (), None).__dict__,
    "message",
    "asctime",
    "taskName",
}


def replaced(text: str) -> str:
    """``text`` with each lone surrogate made U+FFFD."""
    return re.sub("[\ud800-\udfff]", "\ufffd", text)


def as_json(value: Any) -> Any:
    """What a line holds for an extra ``value``: itself where JSON holds it exactly
    (no NaN), else its ``str()``; lone surrogates made U+FFFD either way."""
    if faithful(value):
        try:
            return json.loads(replaced(json.dumps(value, ensure_ascii=False, allow_nan=False)))
        except ValueError:
            pass
    return replaced(safe_str(value))


def without_process(value: dict[str, Any]) -> dict[str, Any]:
    return {key: item for key, item in value.items() if key not in PER_PROCESS}


# -- one process -------------------------------------------------------------------

VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(st.characters(codec=None, categories=None)),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
        | st.frozensets(st.integers(), max_size=3)
    ),
    max_leaves=12,
)
ANY_TEXT = st.text(st.characters(codec=None, categories=None), max_size=200)


class TestEveryLineIsJSON:
    @settings(max_examples=300, deadline=None)
    @given(message=ANY_TEXT, extra=st.dictionaries(ANY_TEXT, VALUES, max_size=5))
    def test_any_message_and_extras_give_one_strict_json_line(
        self, message: str, extra: dict[str, Any]
    ) -> None:
        """Whatever the message and the extras hold (control characters, quotes, lone
        surrogates, NaN, tuples, sets, nesting), the line is one object a strict parser
        reads: the message, and each extra under its key, as itself where JSON holds it
        exactly and as its ``str()`` where it cannot, lone surrogates made U+FFFD."""
        extra = {key: value for key, value in extra.items() if key not in RESERVED}
        got = strict(format_one(record(message, **extra)))
        assert got["message"] == replaced(message)
        fields = list(got)[: len(logfunnel.JSONFormatter().fields) - 2]
        taken = set(logfunnel.JSONFormatter().fields.values())
        expected = {}
        for name, value in extra.items():
            key = replaced(name)
            expected[f"extra_{key}" if key in taken else key] = as_json(value)
        assume(len(expected) == len(extra))  # two names that read the same once replaced
        assert {key: got[key] for key in got if key not in fields} == expected

    def test_hostile_values_each_give_one_readable_line(self) -> None:
        """A non-serialisable extra, a recursive list, a value whose ``__str__`` raises,
        a NaN and an int too long to print: the record is still one valid line, each
        value as its ``str()`` (or repr, when ``str()`` raises)."""
        loop: list[Any] = [1]
        loop.append(loop)
        rec = record(
            "m",
            point=jw.Point(),
            loop=loop,
            bad=jw.Unprintable(),
            nan=float("nan"),
            deep=[float("inf")],
            huge=10**5000,
            pair=(1, 2),
            obj=object,
        )
        got = strict(format_one(rec))
        assert got["point"] == "Point(1, 2)"
        assert got["loop"] == "[1, [...]]"
        assert got["bad"] == "<Unprintable>"
        assert got["nan"] == "nan"
        assert got["deep"] == "[inf]"
        assert got["huge"].startswith("<int object: str() failed")
        assert got["pair"] == "(1, 2)"
        assert got["obj"] == "<class 'object'>"

    def test_a_message_whose_arguments_cannot_be_merged_still_gives_a_line(self) -> None:
        """An argument whose ``__str__`` raises: the line holds the raw parts and why,
        where a stdlib formatter would raise and the record would be lost."""
        got = strict(format_one(record("value %s", (jw.Unprintable(),))))
        assert "message could not be formatted: RuntimeError: no str for you" in got["message"]

    def test_what_other_readers_take_for_line_ends_is_escaped(self) -> None:
        """U+0085, U+2028 and U+2029, which ``str.splitlines`` and some shippers take
        for line ends, are escaped: the record stays on one line for them too."""
        message = "a\x85b\u2028c\u2029d"
        line = format_one(record(message, key="\u2028"))
        assert "\u2028" not in line
        assert line.count("\\u2028") == 2
        assert strict(line)["message"] == message

    def test_a_10_mib_message_is_one_line(self) -> None:
        """A 10 MiB message, newlines in it, is one line holding all of it."""
        message = ("x" * 1023 + "\n") * 10 * 1024
        got = strict(format_one(record(message)))
        assert got["message"] == message

    def test_exact_extras_keep_their_json_types(self) -> None:
        """Extras JSON holds exactly are written as themselves, in the record's order."""
        extra = {
            "user": "ann",
            "n": 3,
            "ratio": 0.5,
            "ok": False,
            "none": None,
            "l": [1, {"k": []}],
        }
        got = strict(format_one(record("m", **extra)))
        keys = list(got)
        assert keys[keys.index("threadName") + 1 :] == list(extra)
        assert {key: got[key] for key in extra} == extra

    def test_an_extra_named_like_a_field_does_not_replace_it(self) -> None:
        """An extra called ``host`` or ``level`` is written as ``extra_host`` /
        ``extra_level``: the line has each key once, the fields as they are."""
        line = format_one(record("m", host="elsewhere", level="mine"))
        pairs = json.loads(line, object_pairs_hook=lambda pairs: pairs)
        keys = [key for key, _ in pairs]
        assert len(keys) == len(set(keys))
        got = dict(pairs)
        assert got["host"] == socket.gethostname()
        assert got["level"] == "INFO"
        assert (got["extra_host"], got["extra_level"]) == ("elsewhere", "mine")

    def test_a_record_from_another_hosts_producer_names_that_host(self) -> None:
        """Formatted in the collector (a sink that is not plain text turns line mode off),
        a record a producer on another host sent says that host, as the producer's own
        line would; a message that holds the host field's text changes nothing."""
        from logfunnel._protocol._codec import decode_record, encode_record, make_record

        here = socket.gethostname()
        message = f'"host":"{here}"'
        sent = logging.LogRecord("w", logging.INFO, __file__, 1, message, None, None)
        received = make_record(decode_record(encode_record(sent, 0)[5:])[1], "elsewhere")
        got = strict(logfunnel.JSONFormatter().format(received))
        assert (got["host"], got["message"]) == ("elsewhere", message)
        local = make_record(decode_record(encode_record(sent, 0)[5:])[1], here)
        assert strict(logfunnel.JSONFormatter().format(local))["host"] == here


class TestFields:
    def test_the_default_fields(self) -> None:
        """Time (UTC, ISO 8601, microseconds), level, logger, message, host, process
        and thread, in that order; no exception or stack key on a record without them."""
        rec = record("hello %s", ("you",))
        rec.created = 1_700_000_025.123456
        got = strict(format_one(rec))
        assert list(got) == [
            "time", "level", "logger", "message", "host",
            "process", "processName", "thread", "threadName",
        ]  # fmt: skip
        assert got["time"] == "2023-11-14T22:13:45.123456Z"
        assert got["level"] == "INFO"
        assert got["logger"] == "t"
        assert got["message"] == "hello you"
        assert got["host"] == socket.gethostname()
        assert (got["process"], got["processName"]) == (rec.process, rec.processName)
        assert (got["thread"], got["threadName"]) == (rec.thread, rec.threadName)

    def test_each_record_has_its_own_process_thread_and_second(self) -> None:
        """Records from other threads, processes and seconds, one after the other
        through one formatter, each carry their own values (nothing is kept from the
        record before)."""
        formatter = logfunnel.JSONFormatter()
        for number in range(4):
            rec = record()
            rec.process, rec.processName = 100 + number % 2, f"p{number % 2}"
            rec.thread, rec.threadName = 200 + number // 2, f"t{number // 2}"
            rec.created = 1_700_000_000 + number * 0.6
            got = strict(format_one(rec, formatter))
            assert (got["process"], got["processName"]) == (rec.process, rec.processName)
            assert (got["thread"], got["threadName"]) == (rec.thread, rec.threadName)
            assert got["time"][:19] == f"2023-11-14T22:13:{20 + int(number * 0.6):02d}"

    def test_one_formatter_in_several_threads(self) -> None:
        """A formatter shared by handlers in several threads writes each thread's own
        record on each line (thread switches forced as often as the interpreter can)."""
        formatter = logfunnel.JSONFormatter()
        wrong: list[str] = []

        def work(name: str) -> None:
            for number in range(3000):
                rec = record(f"{name} {number}")
                got = json.loads(formatter.format(rec))
                if got["message"] != f"{name} {number}":
                    wrong.append(got["message"])

        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        try:
            threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(JOIN_TIMEOUT)
        finally:
            sys.setswitchinterval(interval)
        assert wrong == []

    @pytest.mark.parametrize("created", [0.0, 0.9999996, 1_700_000_025.5, 4_102_444_800.000001])
    def test_the_time_is_the_records_to_the_microsecond(self, created: float) -> None:
        """The time is the record's creation time in UTC, rounded to the microsecond,
        as ``datetime`` gives it."""
        rec = record()
        rec.created = created
        expected = datetime.datetime.fromtimestamp(created, datetime.timezone.utc)
        text = expected.isoformat(timespec="microseconds").replace("+00:00", "Z")
        assert strict(format_one(rec))["time"] == text

    def test_exception_and_stack(self) -> None:
        """A record with an exception and a stack carries both texts, as the stdlib
        formats them."""
        try:
            raise ValueError("bad")
        except ValueError:
            exc_info = sys.exc_info()
        rec = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, __file__, 1, "m", (), exc_info, sinfo="Stack:\n  here"
        )
        got = strict(format_one(rec))
        reference = logging.Formatter()
        assert got["exception"] == reference.formatException(exc_info)
        assert got["stack"] == "Stack:\n  here"
        assert list(got)[-2:] == ["exception", "stack"]

    def test_fields_chosen_and_renamed(self) -> None:
        """``fields`` as a mapping picks the fields, their order and their keys;
        ``extras=False`` leaves the extras out."""
        formatter = logfunnel.JSONFormatter(
            {"message": "msg", "time": "@timestamp", "levelno": "severity", "lineno": "line"},
            extras=False,
        )
        got = strict(format_one(record("hi", user="ann"), formatter))
        assert list(got) == ["msg", "@timestamp", "severity", "line"]
        assert (got["msg"], got["severity"], got["line"]) == ("hi", logging.INFO, 1)

    @settings(max_examples=200, deadline=None)
    @given(
        chosen=st.lists(
            st.tuples(
                st.sampled_from(sorted(FIELDS - {"exception", "stack"})),
                st.text(st.characters(exclude_categories=("Cs",)), max_size=8),
            ),
            unique_by=(lambda pair: pair[0], lambda pair: pair[1]),
            max_size=10,
        ),
        made=st.lists(
            st.tuples(
                st.text(st.characters(exclude_categories=("Cs",)), max_size=6),
                st.text(st.characters(exclude_categories=("Cs",)), max_size=6),
                st.floats(min_value=-2e9, max_value=4e9)
                | st.integers(0, 4_000_000_000).map(lambda micros: micros / 1e6),
            ),
            min_size=1,
            max_size=4,
        ),
        message=st.text(st.characters(exclude_categories=("Cs",)), max_size=40),
    )
    def test_any_fields_in_any_order_hold_what_the_record_holds(
        self, chosen: list[tuple[str, str]], made: list[tuple[str, str, float]], message: str
    ) -> None:
        """Whatever fields are chosen, in whatever order and under whatever keys (``%``,
        quotes, backslashes), whatever the process and thread are called and whenever
        the record was made, each line holds exactly those keys in that order, each with
        the record's own value (the time as ``datetime`` gives it), one record after
        another through one formatter, and in one ``%`` over a template."""
        formatter = logfunnel.JSONFormatter(dict(chosen), extras=False)
        # An ordinary record never needs the field by field way, which would hide a
        # template that cannot take it: here that way writes no JSON.
        formatter._template, formatter._getters = "", []
        for number, (process_name, thread_name, created) in enumerate(made):
            rec = record(message, flag=True)
            if not hasattr(rec, "taskName"):  # Python 3.11: a record has it from 3.12
                rec.taskName = None
            rec.processName, rec.threadName = process_name, thread_name
            rec.thread = 7 + number
            rec.created = created
            when = datetime.datetime.fromtimestamp(rec.created, datetime.timezone.utc)
            derived = {
                "time": when.isoformat(timespec="microseconds").replace("+00:00", "Z"),
                "level": rec.levelname,
                "logger": rec.name,
                "message": message,
                "host": socket.gethostname(),
            }
            got = json.loads(format_one(rec, formatter), object_pairs_hook=list)
            assert got == [
                (key, derived[name] if name in derived else getattr(rec, name, None))
                for name, key in chosen
            ]

    def test_loggers_without_end_keep_the_formatter_small(self) -> None:
        """The formatter keeps level and logger names encoded for the next record, but
        a program that makes a logger for each request does not make it grow without
        bound, and each line names its own logger."""
        formatter = logfunnel.JSONFormatter()
        for number in range(3000):
            rec = record()
            rec.name = f"request.{number}"
            assert strict(formatter.format(rec))["logger"] == rec.name
        assert len(formatter._names) <= 1024

    def test_a_record_a_filter_changed_is_written_field_by_field(self) -> None:
        """A record missing an attribute, or with a time that is not one, still gives a
        line: the missing field is null, the odd time as any other value."""
        rec = record()
        del rec.__dict__["threadName"]
        rec.created = "yesterday"  # type: ignore[assignment]
        got = strict(format_one(rec))
        assert got["threadName"] is None
        assert got["time"] == "yesterday"
        for created, shown in ((float("nan"), "nan"), (-1e20, -1e20)):
            rec.created = created
            assert strict(format_one(rec))["time"] == shown

    def test_unknown_fields_are_refused(self) -> None:
        """A misspelt field is an error that names the fields there are."""
        with pytest.raises(ValueError, match=r"unknown JSON field.*'mesage'.*message"):
            logfunnel.JSONFormatter(["mesage"])

    def test_from_dictconfig(self, tmp_path: Path) -> None:
        """``dictConfig`` makes one with ``()`` and its options, on any handler."""
        path = tmp_path / "app.jsonl"
        logging.config.dictConfig(
            {
                "version": 1,
                # A logger "app" another test made must not be disabled.
                "disable_existing_loggers": False,
                "formatters": {
                    "json": {
                        "()": "logfunnel.JSONFormatter",
                        "fields": {"time": "ts", "message": "msg"},
                    }
                },
                "handlers": {
                    "file": {
                        "class": "logging.FileHandler",
                        "filename": str(path),
                        "formatter": "json",
                    }
                },
                "root": {"handlers": ["file"], "level": "INFO"},
            }
        )
        logging.getLogger("app").info("hello", extra={"user": "ann"})
        logging.getLogger().handlers[0].close()
        (line,) = path.read_text(encoding="utf-8").splitlines()
        got = strict(line)
        assert list(got) == ["ts", "msg", "user"]
        assert got["msg"] == "hello"


# -- behind a funnel -----------------------------------------------------------------


class RecordFileHandler(logging.FileHandler):
    """A subclass: the collector formats whole records for it instead of producer lines."""


def json_sink(
    path: Path, kind: type[logging.FileHandler] = logging.FileHandler
) -> logging.FileHandler:
    sink = kind(path, encoding="utf-8")
    sink.setFormatter(logfunnel.JSONFormatter())
    return sink


def one_process_lines(path: Path, *, wire: bool = False) -> list[dict[str, Any]]:
    """What the sink writes for ``jw.records()`` in this process. With ``wire``, text
    is first written as the wire carries it to a collector: a lone surrogate in the
    message as its backslash escape, a readable form (extras travel as JSON, which
    keeps it; a producer formats before either)."""
    sink = json_sink(path)
    try:
        for rec in jw.records():
            if wire:
                rec.msg, rec.args = backslashed(rec.getMessage()), ()
            sink.handle(rec)
    finally:
        sink.close()
    return [strict(line) for line in path.read_text(encoding="utf-8").split("\n")[:-1]]


def backslashed(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def funnel_lines(path: Path) -> list[dict[str, Any]]:
    return [
        strict(line)
        for line in path.read_text(encoding="utf-8").split("\n")[:-1]
        if json.loads(line)["logger"] == jw.log.name
    ]


@pytest.fixture
def warning_root() -> None:
    """The parent's root at WARNING, which the workers follow; restored by conftest."""
    logging.getLogger().setLevel(logging.WARNING)


@pytest.mark.usefixtures("warning_root")
class TestSameAsOneProcess:
    def test_workers_write_what_one_process_writes(self, start_method: str, tmp_path: Path) -> None:
        """Workers behind a funnel, whose sinks are a plain file (formatted in the
        producers, line mode) and a subclass (formatted in the collector from the
        rebuilt record), write the objects that the sink writes in one process:
        every field but the worker's process and thread, every extra, the exception.
        (The collector-side record has a lone surrogate as the wire carries it.)"""
        expected = [without_process(line) for line in one_process_lines(tmp_path / "one.jsonl")]
        assert len(expected) == len(jw.records())
        lines_path, records_path = tmp_path / "lines.jsonl", tmp_path / "records.jsonl"
        sinks = [json_sink(lines_path), json_sink(records_path, RecordFileHandler)]
        with logfunnel.Funnel(handlers=sinks) as funnel:
            ctx = funnel.context(start_method)
            proc = ctx.Process(target=jw.log_records)
            proc.start()
            proc.join(JOIN_TIMEOUT)
            assert proc.exitcode == 0
        wire = [without_process(x) for x in one_process_lines(tmp_path / "w.jsonl", wire=True)]
        for path, same in ((lines_path, expected), (records_path, wire)):
            got = funnel_lines(path)
            assert [without_process(line) for line in got] == same, path.name
            assert {line["process"] for line in got} == {proc.pid}
            assert {line["processName"] for line in got} == {proc.name}

    def test_a_json_sink_keeps_line_mode_on(self, tmp_path: Path) -> None:
        """With every sink a JSON file or console sink, the producers get the
        formatter's description and send bare lines (line mode)."""
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logfunnel.JSONFormatter())
        sinks = [json_sink(tmp_path / "a.jsonl"), console]
        with logfunnel.Funnel(handlers=sinks):
            handler = logfunnel.attached()
            assert handler is not None
            assert handler.config["lines"] == logging.NOTSET
            assert handler.config["formats"] == [text_spec(console)]
            logging.getLogger("x").warning("one line")
        assert (
            strict(Path(tmp_path / "a.jsonl").read_text().splitlines()[0])["message"] == "one line"
        )

    def test_a_renamed_json_sink_is_formatted_as_configured(self, tmp_path: Path) -> None:
        """The producers format with the sink's own options, not the defaults."""
        sink = logging.FileHandler(tmp_path / "a.jsonl")
        sink.setFormatter(logfunnel.JSONFormatter({"message": "msg"}, extras=False))
        with logfunnel.Funnel(handlers=[sink]):
            logging.getLogger("x").warning("hi", extra={"user": "ann"})
        assert [strict(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()] == [
            {"msg": "hi"}
        ]


class TestShortcuts:
    def test_funnel_formatter_with_a_collector_process(self, tmp_path: Path) -> None:
        """``Funnel(path, formatter=JSONFormatter(...))`` writes JSON lines, also from
        a collector process, which gets the formatter as its options."""
        path = tmp_path / "app.jsonl"
        formatter = logfunnel.JSONFormatter({"message": "msg", "level": "lvl"})
        with logfunnel.Funnel(path, formatter=formatter, level="INFO", collector="process"):
            logging.getLogger("x").info("hi", extra={"user": "ann"})
        assert [strict(x) for x in path.read_text().splitlines()] == [
            {"msg": "hi", "lvl": "INFO", "user": "ann"}
        ]

    def test_sinkconfig_keeps_the_formatter_as_data(self) -> None:
        """A ``SinkConfig`` holds the formatter's options, JSON-safe, and its sinks
        format as the formatter did."""
        formatter = logfunnel.JSONFormatter(["message", "levelno"])
        config = SinkConfig(console=True, formatter=formatter)
        data = json.loads(json.dumps(config.to_json()))
        (sink,) = SinkConfig.from_json(data).build()
        rec = record("hi", user="ann")
        assert sink.formatter is not None
        assert sink.formatter.format(rec) == formatter.format(rec)

    @pytest.mark.parametrize(
        ("kwargs", "error"),
        [
            ({"formatter": logging.Formatter()}, "takes a logfunnel.JSONFormatter"),
            ({"formatter": {"fieldz": []}}, "unknown JSONFormatter option"),
            ({"formatter": {"fields": ["nope"]}}, "unknown JSON field"),
            ({"formatter": {}, "fmt": "%(message)s"}, "does not go with fmt="),
        ],
    )
    def test_bad_formatters_are_refused(self, kwargs: dict[str, Any], error: str) -> None:
        """Anything but a ``JSONFormatter`` or its options, or one with a text format,
        is refused when the funnel is made."""
        with pytest.raises((TypeError, ValueError), match=error):
            logfunnel.Funnel(console=True, **kwargs)

    def test_run_json(self, tmp_path: Path) -> None:
        """``logfunnel run --json -o FILE`` writes the program's records as JSON lines."""
        path = tmp_path / "run.jsonl"
        program = "import logging; logging.getLogger('p').warning('from %s', 'run')"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "logfunnel",
                "run",
                "--json",
                "-o",
                str(path),
                "--",
                sys.executable,
                "-c",
                program,
            ],
            check=True,
            timeout=JOIN_TIMEOUT,
        )
        (line,) = [strict(x) for x in path.read_text().splitlines() if '"logger":"p"' in x]
        assert (line["message"], line["level"]) == ("from run", "WARNING")
