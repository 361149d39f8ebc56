"""Records rebuilt in the collector: exceptions, message and arguments, extras.

Most tests take a record through the wire format and the collector's own
``_make_record`` in this process; the last ones go through real funnels and
worker processes under each start method.
"""

from __future__ import annotations

import copy
import datetime
import decimal
import enum
import io
import itertools
import json
import linecache
import logging
import pickle
import sys
import traceback
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import _fidelity_workers as workers
import pytest
from pythonjsonlogger.json import JsonFormatter

import logfunnel
from logfunnel._protocol import _exceptions
from logfunnel._protocol._codec import ReceivedRecord, decode_record, encode_record, make_record

JOIN_TIMEOUT = 60
ExcInfo = Any


def record_of(msg: object = "m", args: Any = (), exc_info: ExcInfo = None, **extra: Any) -> Any:
    """A record as ``Logger.makeRecord`` makes one (a single mapping argument unwrapped)."""
    record = logging.LogRecord(
        "some.logger", logging.ERROR, __file__, 42, msg, args, exc_info, "fn", None
    )
    record.__dict__.update(extra)
    return record


def rebuilt(record: logging.LogRecord) -> Any:
    """``record`` after the wire and the collector's ``_make_record``."""
    frame = encode_record(record, 0)
    return make_record(decode_record(frame[5:])[1])


def formatted(record: logging.LogRecord, formatter: logging.Formatter | None = None) -> str:
    """What ``formatter`` writes for ``record``, on a copy (format() caches exc_text)."""
    return (formatter or logging.Formatter()).format(logging.makeLogRecord(record.__dict__))


def raised(function: Callable[[], object]) -> ExcInfo:
    try:
        function()
    except BaseException:
        return sys.exc_info()
    raise AssertionError("did not raise")


def _recurse(depth: int = 0) -> int:
    return _recurse(depth + 1) + 1


def _keyboard() -> None:
    raise KeyboardInterrupt


def _syntax() -> None:
    compile("x = (1,\n  2 3)", "<typed>", "exec")


def _tuple_key() -> None:
    raise KeyError(("a", 1))


def _unicode() -> None:
    b"\xff".decode("utf-8")


def _suppressed() -> None:
    try:
        _ = 1 / 0
    except ZeroDivisionError:
        raise RuntimeError("instead") from None


class Counted(ValueError):
    """Counts every run of its code: the collector must never run any of it."""

    runs = 0

    def __new__(cls, *args: object) -> Counted:
        Counted.runs += 1
        return super().__new__(cls, *args)

    def __init__(self, *args: object) -> None:
        Counted.runs += 1
        super().__init__(*args)

    def __str__(self) -> str:
        Counted.runs += 1
        return "counted"

    def __repr__(self) -> str:
        Counted.runs += 1
        return "Counted()"


def _counted() -> None:
    raise Counted("x")


CASES: dict[str, Callable[[], object]] = {
    "cause and carets": workers.EXCEPTIONS[0],
    "context, own __init__ and __str__": workers.EXCEPTIONS[1],
    "expression over two lines": workers.EXCEPTIONS[2],
    "OSError with a file name": workers.EXCEPTIONS[3],
    "notes": workers.EXCEPTIONS[4],
    "exception group": workers.EXCEPTIONS[5],
    "recursion, 1000 frames": _recurse,
    "KeyboardInterrupt": _keyboard,
    "SyntaxError": _syntax,
    "KeyError with a tuple key": _tuple_key,
    "UnicodeDecodeError": _unicode,
    "context suppressed": _suppressed,
    "user code": _counted,
    "NameError": lambda: wantd,  # type: ignore[name-defined]  # noqa: F821
    "AttributeError": lambda: Counted("x").runz,  # type: ignore[attr-defined]
}


class TestExceptionRebuilt:
    @pytest.mark.parametrize("case", list(CASES))
    def test_formatter_writes_the_producers_text(self, case: str) -> None:
        """Formatter().format of the rebuilt record is the producer's text, carets included."""
        record = record_of("failed %s", ("x",), raised(CASES[case]))
        again = rebuilt(record)
        assert again.exc_text is None
        assert formatted(again) == formatted(record)

    def test_exc_info_holds_real_exception_and_traceback_objects(self) -> None:
        """exc_info is (type, instance, traceback) of real objects, the traceback of real frames."""
        again = rebuilt(record_of(exc_info=raised(workers.EXCEPTIONS[0])))
        kind, value, tb = again.exc_info
        assert isinstance(value, workers.AppError)
        assert kind is type(value)
        assert isinstance(tb, types.TracebackType)
        assert value.__traceback__ is tb
        assert [frame.name for frame in traceback.extract_tb(tb)] == ["raised", "_wrapped"]
        assert all(isinstance(entry[0], types.FrameType) for entry in traceback.walk_tb(tb))

    @pytest.mark.skipif(sys.version_info < (3, 11), reason="columns came with 3.11")
    def test_positions_are_the_producers_for_stdlib_and_rich(self) -> None:
        """tb_lasti and each frame's own f_lasti (which rich reads) give the producer's columns."""
        original = raised(workers.EXCEPTIONS[2])
        again = rebuilt(record_of(exc_info=original))

        def positions(tb: Any, lasti: Callable[[Any], int]) -> list[Any]:
            return [
                next(itertools.islice(t.tb_frame.f_code.co_positions(), lasti(t) // 2, None))
                for t in _entries(tb)
            ]

        want = positions(original[2], lambda t: t.tb_lasti)
        assert positions(again.exc_info[2], lambda t: t.tb_lasti) == want
        assert positions(again.exc_info[2], lambda t: t.tb_frame.f_lasti) == want
        assert any(col is not None for *_, col in want)

    def test_overridden_formatException_gets_the_exception(self) -> None:
        """A Formatter subclass's own formatException runs on the rebuilt exc_info."""

        class Names(logging.Formatter):
            def formatException(self, ei: ExcInfo) -> str:
                return f"{ei[0].__qualname__}|{ei[1]}|{len(traceback.extract_tb(ei[2]))} frames"

        record = record_of(exc_info=raised(workers.EXCEPTIONS[1]))
        assert formatted(rebuilt(record), Names()) == formatted(record, Names())
        assert formatted(rebuilt(record), Names()).endswith(
            "FancyError|fancy failure, code 42|2 frames"
        )

    def test_json_formatter_writes_the_exc_info_key(self) -> None:
        """python-json-logger, which reads record.exc_info, writes the producer's traceback."""
        formatter = JsonFormatter("%(levelname)s %(message)s")
        record = record_of("failed %s", ("x",), raised(workers.EXCEPTIONS[0]))
        got = json.loads(formatted(rebuilt(record), formatter))
        want = json.loads(formatted(record, formatter))
        assert got == want
        assert "AppError: could not look it up" in got["exc_info"]

    def test_builtin_and_plain_classes_are_the_real_ones(self) -> None:
        """A built-in exception, and a plain subclass the collector imported, keep their class."""
        cause = rebuilt(record_of(exc_info=raised(workers.EXCEPTIONS[0]))).exc_info[1].__cause__
        assert type(cause) is KeyError
        assert cause.args == ("missing",)
        value = rebuilt(record_of(exc_info=raised(workers.EXCEPTIONS[0]))).exc_info[1]
        assert type(value) is workers.AppError

    def test_user_classes_become_stand_ins_and_none_of_their_code_runs(self) -> None:
        """A class with its own code becomes a same-named stand-in; none of its code runs."""
        frame = encode_record(record_of(exc_info=raised(_counted)), 0)
        before = Counted.runs
        value = make_record(decode_record(frame[5:])[1]).exc_info[1]
        text = "".join(traceback.format_exception_only(type(value), value))
        assert Counted.runs == before
        assert isinstance(value, _exceptions.StandIn)
        assert isinstance(value, ValueError)
        assert not isinstance(value, Counted)
        kind = type(value)
        assert (kind.__name__, kind.__module__, kind.__qualname__) == (
            "Counted",
            __name__,
            "Counted",
        )
        assert text == f"{__name__}.Counted: counted\n"
        assert value.args == ("x",)

    def test_no_module_is_imported_and_no_module_getattr_runs(self) -> None:
        """A class of a module the collector lacks is a stand-in; nothing is imported or run."""
        calls: list[str] = []
        lazy = types.ModuleType("lazy_errors_module")
        lazy.__getattr__ = calls.append  # type: ignore[attr-defined]
        sys.modules["lazy_errors_module"] = lazy
        try:
            for module in ("lazy_errors_module", "no_such_module_anywhere"):
                value = self._with_class(module, "Boom")
                assert isinstance(value, _exceptions.StandIn)
                assert f"{module}.Boom: boom" in "".join(
                    traceback.format_exception(type(value), value, None)
                )
            assert calls == []
            assert "no_such_module_anywhere" not in sys.modules
        finally:
            del sys.modules["lazy_errors_module"]

    @staticmethod
    def _with_class(module: str, qualname: str) -> Any:
        data = json.loads(_exceptions.encode_exception(raised(workers.EXCEPTIONS[4])) or b"")
        data["e"][0].update(m=module, q=qualname, n=qualname, s="boom")
        return _exceptions.decode_exception(json.dumps(data).encode())[0][1]

    @pytest.mark.skipif(sys.version_info < (3, 12), reason="suggestions came with 3.12")
    def test_suggestions_are_made_again_and_str_stays_the_producers(self) -> None:
        """The formatted text has "Did you mean", as in one process; str(exc) stays plain."""
        for function, plain in (
            (workers.EXCEPTIONS[6], "name 'wantd' is not defined"),
            (workers.EXCEPTIONS[7], "'Box' object has no attribute 'wantd'"),
        ):
            record = record_of(exc_info=raised(function))
            value = rebuilt(record).exc_info[1]
            assert str(value) == plain
            assert f"{plain}. Did you mean: 'wanted'?" in formatted(rebuilt(record))

    def test_a_class_of_the_spawned_main_module_prints_as_in_one_process(self) -> None:
        """A spawned worker's __mp_main__ class prints as the one process's __main__ class does."""
        kind = type("MainError", (ValueError,), {"__module__": "__mp_main__"})
        main = sys.modules["__main__"]
        sys.modules["__mp_main__"] = main  # what a spawn or forkserver child has
        try:
            value = rebuilt(record_of(exc_info=raised(lambda: _raise(kind("x"))))).exc_info[1]
        finally:
            del sys.modules["__mp_main__"]
        assert type(value).__module__ == "__main__"
        assert traceback.format_exception_only(type(value), value) == ["MainError: x\n"]

    def test_a_base_exception_that_is_not_an_exception_is_a_stand_in(self) -> None:
        """KeyboardInterrupt arrives as a stand-in that prints KeyboardInterrupt, not as itself."""
        value = rebuilt(record_of(exc_info=raised(_keyboard))).exc_info[1]
        assert not isinstance(value, KeyboardInterrupt)
        assert isinstance(value, _exceptions.StandIn)
        assert traceback.format_exception_only(type(value), value) == ["KeyboardInterrupt\n"]

    def test_chain_links_are_rebuilt(self) -> None:
        """__cause__, __context__ and __suppress_context__ come back as the producer had them."""
        value = rebuilt(record_of(exc_info=raised(workers.EXCEPTIONS[0]))).exc_info[1]
        assert isinstance(value.__cause__, KeyError)
        assert value.__suppress_context__
        fancy = rebuilt(record_of(exc_info=raised(workers.EXCEPTIONS[1]))).exc_info[1]
        assert isinstance(fancy.__context__, ZeroDivisionError)
        assert fancy.__cause__ is None
        assert not fancy.__suppress_context__
        quiet = rebuilt(record_of(exc_info=raised(_suppressed))).exc_info[1]
        assert quiet.__suppress_context__
        assert quiet.__context__ is None  # the stdlib would not print it: it is not sent

    @pytest.mark.skipif(sys.version_info < (3, 11), reason="notes and groups came with 3.11")
    def test_notes_and_group_members_are_rebuilt(self) -> None:
        """__notes__ and the members of an exception group come back."""
        noted = rebuilt(record_of(exc_info=raised(workers.EXCEPTIONS[4]))).exc_info[1]
        assert noted.__notes__ == ["first note", "second\nnote"]
        group = rebuilt(record_of(exc_info=raised(workers.EXCEPTIONS[5]))).exc_info[1]
        assert type(group) is ExceptionGroup  # noqa: F821 - 3.11+
        assert [type(e).__name__ for e in group.exceptions] == [
            "ValueError",
            "AppError",
            "TypeError",
        ]

    def test_syntax_and_os_errors_keep_their_details(self) -> None:
        """A SyntaxError keeps its file, line and text; an OSError its errno and file name."""
        syntax = rebuilt(record_of(exc_info=raised(_syntax))).exc_info[1]
        assert type(syntax) is SyntaxError
        assert (syntax.filename, syntax.lineno, syntax.text) == ("<typed>", 2, "  2 3)\n")
        missing = rebuilt(record_of(exc_info=raised(workers.EXCEPTIONS[3]))).exc_info[1]
        assert type(missing) is FileNotFoundError
        assert (missing.errno, missing.filename) == (2, "/nonexistent/logfunnel/file.txt")

    def test_a_chain_of_ten_thousand_causes_stays_bounded_and_readable(self) -> None:
        """10,000 chained causes send at most MAX_EXCEPTIONS, and the cut is said in the text."""
        error: BaseException = ValueError("cause 0")
        for number in range(1, 10_000):
            try:
                raise ValueError(f"cause {number}") from error
            except ValueError as exc:
                error = exc
        data = _exceptions.encode_exception((type(error), error, error.__traceback__))
        assert data is not None
        assert len(data) < _exceptions.MAX_JSON
        assert len(json.loads(data)["e"]) == _exceptions.MAX_EXCEPTIONS
        text = formatted(rebuilt(record_of(exc_info=(type(error), error, error.__traceback__))))
        assert text.count("ValueError: cause") == _exceptions.MAX_EXCEPTIONS
        assert f"left out {10_000 - _exceptions.MAX_EXCEPTIONS} chained exceptions" in text
        assert text.rstrip().endswith("ValueError: cause 9999")

    def test_a_recursion_errors_frames_travel_once_each(self) -> None:
        """A RecursionError's ~1,000 entries send each frame once and print as in one process."""
        info = raised(_recurse)
        data = _exceptions.encode_exception(info)
        assert data is not None
        assert len(json.loads(data)["f"]) == 2  # raised() and _recurse()
        assert sum(1 for _ in _entries(info[2])) > 900
        assert formatted(rebuilt(record_of(exc_info=info))) == formatted(record_of(exc_info=info))

    def test_linecache_is_not_seeded_with_the_producers_source(self, tmp_path: Path) -> None:
        """A frame whose file the collector lacks shows no source line; linecache learns nothing."""
        source = tmp_path / "gone.py"
        source.write_text("def boom():\n    raise ValueError('from a file that will go')\n")
        code = compile(source.read_text(), str(source), "exec")
        namespace: dict[str, Any] = {}
        exec(code, namespace)  # the test's own code, not the package's
        record = record_of(exc_info=raised(namespace["boom"]))
        encoded = encode_record(record, 0)
        source.unlink()
        linecache.checkcache(str(source))
        again = make_record(decode_record(encoded[5:])[1])
        text = formatted(again)
        assert f'File "{source}", line 2, in boom\nValueError: from a file that will go' in text
        assert str(source) not in linecache.cache

    def test_frames_hold_no_locals_and_no_caller_chain(self) -> None:
        """Rebuilt frames have no locals and keep no collector frames alive through f_back."""
        tb = rebuilt(record_of(exc_info=raised(workers.EXCEPTIONS[0]))).exc_info[2]
        for entry in _entries(tb):
            frame = entry.tb_frame
            assert frame.f_locals == {}
            back = frame.f_back
            assert back is None or (back.f_code.co_name == "_dispose" and back.f_back is None)

    def test_no_exception_and_a_value_that_is_no_exception(self) -> None:
        """(None, None, None) prints NoneType: None; a non-exception value arrives as text."""
        none = rebuilt(record_of(exc_info=(None, None, None)))
        assert none.exc_info == (None, None, None)
        assert formatted(none).endswith("NoneType: None")
        odd = rebuilt(record_of(exc_info=(ValueError, "not an exception", None)))
        assert odd.exc_info is None
        assert odd.exc_text is not None

    def test_stack_info_arrives_as_the_producer_wrote_it(self) -> None:
        """stack_info, already text in the producer, is formatted the same."""
        record = record_of()
        record.stack_info = "Stack (most recent call last):\n  File x, line 1, in f"
        assert formatted(rebuilt(record)) == formatted(record)


class TestMessageAndArgs:
    @pytest.mark.parametrize(
        ("msg", "args"),
        [
            ("level %d", (workers.Level.HIGH,)),
            ("price %r, %.1f", (workers.PRICE, workers.PRICE)),
            ("id %s at %s", (workers.REQUEST_ID, workers.DAY)),
            ("%(who)s did %(what)s", ({"who": workers.Who(), "what": 1},)),
            ({"event": "structured"}, ()),
            (12345, ()),
            ("broken %s", (workers.BrokenStr(),)),
        ],
        ids=[
            "IntEnum %d",
            "Decimal %r",
            "UUID and date",
            "mapping",
            "dict msg",
            "int msg",
            "bad str",
        ],
    )
    def test_getMessage_is_the_producers(self, msg: object, args: Any) -> None:
        """getMessage() returns the producer's merged message whatever the arguments' types."""
        record = record_of(msg, args)
        again = rebuilt(record)
        assert isinstance(again, logging.LogRecord)
        assert isinstance(again, ReceivedRecord)
        assert again.getMessage() == logfunnel._protocol._codec.safe_message(record)

    def test_msg_is_the_template_and_args_are_json_safe(self) -> None:
        """msg is the template and args the arguments, faithful or as str()."""
        again = rebuilt(record_of("a %s %d %r %s", ("x", 3, 1.5, workers.REQUEST_ID)))
        assert again.msg == "a %s %d %r %s"
        assert again.args == ("x", 3, 1.5, str(workers.REQUEST_ID))
        mapping = rebuilt(record_of("%(a)s", ({"a": [1, {"b": None}], "c": (1, 2)},)))
        assert mapping.args == {"a": [1, {"b": None}], "c": "(1, 2)"}
        assert rebuilt(record_of({"event": "x", "n": [1]})).msg == {"event": "x", "n": [1]}

    def test_a_filter_that_changes_msg_or_args_changes_the_message(self) -> None:
        """As in one process, a filter that replaces msg or args changes getMessage()."""
        again = rebuilt(record_of("user %s", ("alice",)))
        again.args = ("bob",)
        assert again.getMessage() == "user bob"
        again.msg, again.args = "redacted", ()
        assert again.getMessage() == "redacted"

    def test_copy_pickle_and_makeLogRecord(self) -> None:
        """copy.copy keeps everything; a pickle is a plain record with the merged message."""
        again = rebuilt(record_of("level %d", (workers.Level.HIGH,)))
        copied = copy.copy(again)
        assert type(copied) is ReceivedRecord
        assert (copied.getMessage(), copied.msg, copied.args) == (
            again.getMessage(),
            again.msg,
            again.args,
        )
        unpickled = pickle.loads(pickle.dumps(again))
        assert type(unpickled) is logging.LogRecord
        assert (unpickled.getMessage(), unpickled.args) == ("level 3", None)
        plain = rebuilt(record_of("user %s has %d", ("alice", 3)))
        assert logging.makeLogRecord(plain.__dict__).getMessage() == "user alice has 3"

    def test_a_record_factory_with_its_own_getMessage(self) -> None:
        """A producer whose records merge {}-style sends that message, not a %-merge."""

        class Braces(logging.LogRecord):
            def getMessage(self) -> str:
                return str(self.msg).format(*self.args)

        record = Braces("n", logging.INFO, __file__, 1, "{} and {}", ("a", "b"), None)
        assert rebuilt(record).getMessage() == "a and b"


class Role(enum.Enum):
    ADMIN = "admin"


class Colour(str, enum.Enum):
    RED = "red"


class TestExtras:
    VALUES: ClassVar[dict[str, object]] = {
        "uuid": workers.REQUEST_ID,
        "enum": Role.ADMIN,
        "intenum": workers.Level.HIGH,
        "strenum": Colour.RED,
        "date": workers.DAY,
        "datetime": datetime.datetime(2024, 1, 2, 3, 4, 5),
        "decimal": decimal.Decimal("1.50"),
        "who": workers.Who(),
        "tuple": (1, "a"),
        "nested": {"a": [1, (2, 3)], "b": {"c": None}},
        "set": {1},
        "float": 0.1,
        "big": 2**70,
        "bool": True,
    }

    @pytest.mark.parametrize("name", list(VALUES))
    def test_percent_s_prints_str_as_in_one_process(self, name: str) -> None:
        """``%(x)s`` of an extra prints str(x), as in one process, whatever x is."""
        formatter = logging.Formatter(f"[%({name})s]")
        record = record_of(**{name: self.VALUES[name]})
        assert formatted(rebuilt(record), formatter) == formatted(record, formatter)

    def test_json_values_keep_their_type_and_the_rest_is_str(self) -> None:
        """Faithful JSON values arrive equal and of the same type; the others as their str()."""
        again = rebuilt(record_of(**self.VALUES))
        for name, value in self.VALUES.items():
            arrived = getattr(again, name)
            if name in ("float", "big", "bool"):
                assert (arrived, type(arrived)) == (value, type(value))
            else:
                assert arrived == str(value), name

    def test_a_str_that_raises_gives_a_readable_value(self) -> None:
        """An extra whose str() raises still arrives, as its repr, and the record is not lost."""
        again = rebuilt(record_of(broken=workers.BrokenStr(), fine=1))
        assert again.broken.startswith("<_fidelity_workers.BrokenStr object at 0x")
        assert again.fine == 1

    def test_extras_keep_their_order(self) -> None:
        """Extras arrive in the order they were given, which JSON sinks keep."""
        names = [f"k{number}" for number in (5, 1, 9, 3, 7, 2)]
        again = rebuilt(record_of(**dict.fromkeys(names, 1)))
        assert [key for key in again.__dict__ if key in names] == names


def _raise(error: BaseException) -> None:
    raise error


def _entries(tb: Any) -> list[Any]:
    out = []
    while tb is not None:
        out.append(tb)
        tb = tb.tb_next
    return out


# -- through real funnels and workers ------------------------------------------------


def _reference(function: Callable[[], None], formatter: logging.Formatter) -> list[str]:
    """What ``function`` logs through ``formatter`` in this process, with plain logging."""
    stream = io.StringIO()
    sink = logging.StreamHandler(stream)
    sink.setFormatter(formatter)
    root = logging.getLogger()
    others, level = root.handlers[:], root.level
    root.handlers[:] = [sink]
    root.setLevel(logging.DEBUG)
    try:
        function()
    finally:
        root.handlers[:] = others
        root.setLevel(level)
    return stream.getvalue().splitlines()


class Seen(logging.Formatter):
    """A formatter that says what formatException was given."""

    def formatException(self, ei: ExcInfo) -> str:
        kind, value, tb = ei
        names = [frame.name for frame in traceback.extract_tb(tb)]
        return f"{kind.__module__}.{kind.__qualname__}: {value} in {names}"


class TestThroughWorkers:
    def test_structured_sinks_get_a_workers_exception(self, start_method: str) -> None:
        """A worker's log.exception reaches a JSON sink's exc_info and an own formatException."""
        as_json = JsonFormatter("%(levelname)s %(message)s %(step)s")
        seen = Seen("%(message)s")
        want_json = _reference(workers.log_chained, as_json)
        want_seen = _reference(workers.log_chained, seen)
        sinks = [logging.StreamHandler(io.StringIO()), logging.StreamHandler(io.StringIO())]
        sinks[0].setFormatter(as_json)
        sinks[1].setFormatter(seen)
        logging.getLogger().setLevel(logging.DEBUG)
        with logfunnel.Funnel(handlers=sinks) as funnel:
            worker = funnel.context(start_method).Process(target=workers.log_chained)
            worker.start()
            worker.join(JOIN_TIMEOUT)
        assert worker.exitcode == 0
        got_json = sinks[0].stream.getvalue().splitlines()
        assert [json.loads(line) for line in got_json] == [json.loads(line) for line in want_json]
        assert "exc_info" in json.loads(got_json[0])
        assert sinks[1].stream.getvalue().splitlines() == want_seen
        assert (
            "_fidelity_workers.AppError: could not look it up in ['log_exception'," in want_seen[1]
        )

    def test_process_collector_with_a_dictconfig_json_formatter(
        self, start_method: str, tmp_path: Path
    ) -> None:
        """Under collector="process" a dictConfig "()" JSON formatter writes the traceback."""
        path = tmp_path / "log.jsonl"
        config = {
            "version": 1,
            "formatters": {
                "json": {
                    "()": "pythonjsonlogger.json.JsonFormatter",
                    "fmt": "%(levelname)s %(name)s %(message)s",
                }
            },
            "handlers": {
                "file": {"class": "logging.FileHandler", "filename": str(path), "formatter": "json"}
            },
            "root": {"handlers": ["file"], "level": "DEBUG"},
        }
        want = _reference(workers.log_chained, JsonFormatter("%(levelname)s %(name)s %(message)s"))
        logging.getLogger().setLevel(logging.DEBUG)
        with logfunnel.Funnel(collector="process", config=config) as funnel:
            worker = funnel.context(start_method).Process(target=workers.log_chained)
            worker.start()
            worker.join(JOIN_TIMEOUT)
        assert worker.exitcode == 0
        got = [json.loads(line) for line in path.read_text().splitlines()]
        assert [r for r in got if r["name"] == "program"] == [json.loads(line) for line in want]
        assert "Traceback (most recent call last)" in got[-1]["exc_info"]

    def test_values_whose_str_raises_arrive_readable(self, start_method: str) -> None:
        """A worker's argument and extra whose str() raises still reach the sink, readable."""
        records: list[logging.LogRecord] = []
        sink = logging.Handler()
        sink.emit = records.append  # type: ignore[method-assign]
        logging.getLogger().setLevel(logging.DEBUG)
        with logfunnel.Funnel(handlers=[sink]) as funnel:
            worker = funnel.context(start_method).Process(target=workers.bad_values)
            worker.start()
            worker.join(JOIN_TIMEOUT)
        (record,) = [r for r in records if r.name == "program"]
        assert "BrokenStr" in record.getMessage()
        assert "message could not be formatted" in record.getMessage()
        assert record.broken.startswith("<_fidelity_workers.BrokenStr object at 0x")  # type: ignore[attr-defined]
        assert record.fine == 1  # type: ignore[attr-defined]
