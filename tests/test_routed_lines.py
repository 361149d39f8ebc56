"""Line mode beside routes: a handler on a non-root logger keeps line mode for the rest.

Libraries put handlers on their own loggers at import (``distributed``,
``tornado``, ``bokeh``; OpenTelemetry's logging instrumentation), and each is
a route: its records must reach that handler in the parent as in one process.
The collector stays in line mode all the same: producers send the records of
a route logger, and of the loggers below it, as frames with their structured
record, and every other record as a bare line. These tests prove that line
mode stays on, that every sink, route handlers included, gets what it would
get in one process (same text, once, in order, levels as there), and that a
producer which does not know of routed lines gets frames only.
"""

from __future__ import annotations

import io
import json
import logging
import re
import struct
from collections.abc import Iterator
from pathlib import Path

import _workers
import pytest
from _peers import connect, recv_exact, serve
from _support import Records, join_all

import logfunnel
from logfunnel._protocol._codec import KIND_HELLO, PROTOCOL_VERSION, encode_json
from logfunnel._protocol._loggers import UnderRoutes
from logfunnel._sinks._routes import Routes

MARK = "@@ "
#: The root file's format: the mark tells records apart, the rest says whose record it is.
FORMAT = MARK + "%(levelname)s %(name)s %(message)s"
ROUTE_FORMAT = "%(levelname)s %(name)s %(message)s"
WORKERS, COUNT = 3, 120


class Outputs:
    """The parent's handlers of the scenario: a root file sink at INFO; a text handler on
    "lib" (propagates; "lib" logs from DEBUG); records on "quiet" (does not propagate;
    its handler and logger take DEBUG). The root logger is at INFO."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = logging.FileHandler(path, encoding="utf-8")
        self.file.setFormatter(logging.Formatter(FORMAT))
        self.file.setLevel(logging.INFO)
        self.lib_text = io.StringIO()
        self.lib = logging.StreamHandler(self.lib_text)
        self.lib.setFormatter(logging.Formatter(ROUTE_FORMAT))
        self.lib.terminator = "\n--\n"  # tells its records apart
        self.quiet = Records(logging.DEBUG)
        logging.getLogger().setLevel(logging.INFO)
        logging.getLogger("lib").setLevel(logging.DEBUG)
        logging.getLogger("lib").addHandler(self.lib)
        quiet = logging.getLogger("quiet")
        quiet.setLevel(logging.DEBUG)
        quiet.propagate = False
        quiet.addHandler(self.quiet)

    def close(self) -> None:
        logging.getLogger("lib").removeHandler(self.lib)
        logging.getLogger("quiet").removeHandler(self.quiet)
        self.file.close()

    def by_worker(self) -> dict[int, tuple[list[str], list[str], list[str]]]:
        """Per worker: the root file's records, the "lib" handler's texts, the "quiet"
        handler's records as text; each in the order it was written."""
        text = self.path.read_text(encoding="utf-8")
        assert text.startswith(MARK), text[:200]
        assert text.endswith("\n"), text[-200:]
        found: dict[int, tuple[list[str], list[str], list[str]]] = {}

        def put(where: int, entry: str) -> None:
            match = re.search(r"\bw(\d+) ", entry)
            assert match, f"foreign or torn record {entry[:80]!r}"
            found.setdefault(int(match.group(1)), ([], [], []))[where].append(entry)

        for entry in text[len(MARK) : -1].split("\n" + MARK):
            put(0, entry)
        lib_text = self.lib_text.getvalue()
        for entry in lib_text.split("\n--\n")[:-1] if lib_text else []:
            put(1, entry)
        for record in self.quiet.records:
            put(2, f"{record.levelname} {record.name} {record.getMessage()}")
        return found


@pytest.fixture
def in_one_process(tmp_path: Path) -> dict[int, tuple[list[str], list[str], list[str]]]:
    """What the scenario gives in one process, with no funnel: the reference."""
    outputs = Outputs(tmp_path / "one-process.log")
    logging.getLogger().addHandler(outputs.file)
    try:
        for index in [*range(WORKERS), 99]:
            _workers.routed_records(index, COUNT, None)
    finally:
        logging.getLogger().removeHandler(outputs.file)
        outputs.close()
    return outputs.by_worker()


def lines_of(funnel: logfunnel.Funnel) -> tuple[int | None, list[str] | None]:
    """The line mode level and route loggers the funnel's collector offered this process."""
    handler = logfunnel.attached()
    assert handler is not None
    return handler.config["lines"], handler.config.get("routes")


class TestLineModeBesideRoutes:
    def test_line_mode_stays_on_and_names_the_route_loggers(self, tmp_path: Path) -> None:
        """Handlers on "lib" (propagating) and "quiet" (not) leave line mode on; the
        handshake names both, and the producer takes "lib" and "lib.sub" for records
        under a route (sent as frames), "app" and "library" not (sent as lines)."""
        outputs = Outputs(tmp_path / "app.log")
        try:
            with logfunnel.Funnel(handlers=[outputs.file]) as funnel:
                assert lines_of(funnel) == (logging.INFO, ["lib", "quiet"])
                handler = logfunnel.attached()
                assert handler is not None
                assert handler._line is not None
                assert handler._line.routes is not None
                routed = {n: handler._line.routes[n] for n in ("app", "lib", "lib.sub", "library")}
                assert routed == {"app": False, "lib": True, "lib.sub": True, "library": False}
        finally:
            outputs.close()

    @pytest.mark.parametrize("transport", ["unix", "tcp"])
    def test_every_sink_gets_what_it_gets_in_one_process(
        self,
        transport: str,
        start_method: str,
        tmp_path: Path,
        in_one_process: dict[int, tuple[list[str], list[str], list[str]]],
    ) -> None:
        """Workers and the parent log on route loggers, loggers below them and other
        loggers: the root file, the "lib" handler and the "quiet" handler each get the
        same text as in one process, once each, in each producer's order; a DEBUG record
        of "lib" reaches its handler though the root file takes INFO and up."""
        outputs = Outputs(tmp_path / "app.log")
        listen = "tcp://127.0.0.1:0" if transport == "tcp" else None
        try:
            with logfunnel.Funnel(handlers=[outputs.file], listen=listen) as funnel:
                assert lines_of(funnel) == (logging.INFO, ["lib", "quiet"])
                ctx = funnel.context(start_method)
                procs = [
                    ctx.Process(target=_workers.routed_records, args=(w, COUNT, True))
                    for w in range(WORKERS)
                ]
                for proc in procs:
                    proc.start()
                _workers.routed_records(99, COUNT, True)
                join_all(procs, exitcode=0)
        finally:
            outputs.close()
        got = outputs.by_worker()
        assert sorted(got) == sorted(in_one_process)
        for index, (file, lib, quiet) in in_one_process.items():
            assert got[index][0] == file, f"worker {index}"
            assert got[index][2] == quiet, f"worker {index}"
            assert got[index][1] == lib, f"worker {index}"
        file, lib, _ = in_one_process[0]
        assert "DEBUG lib w0 n0 lib debug" in lib
        assert not any(" lib debug" in entry for entry in file)
        assert any("Traceback (most recent call last)" in entry for entry in lib)

    def test_a_route_handler_that_is_also_a_root_sink_keeps_its_order(self, tmp_path: Path) -> None:
        """A file sink on the root and on "lib" writes a "lib" record twice, right after
        the lines before it, as in one process: the lines waiting for it go first."""
        path = tmp_path / "app.log"
        sink = logging.FileHandler(path, encoding="utf-8")
        sink.setFormatter(logging.Formatter("%(message)s"))
        logging.getLogger("lib").addHandler(sink)
        try:
            with logfunnel.Funnel(handlers=[sink]) as funnel:
                assert lines_of(funnel) == (logging.NOTSET, ["lib"])
                for n in range(3):
                    logging.getLogger("app").info("app %d", n)
                    logging.getLogger("lib").info("lib %d", n)
        finally:
            sink.close()
        expected = [line for n in range(3) for line in (f"app {n}", f"lib {n}", f"lib {n}")]
        assert path.read_text(encoding="utf-8").splitlines() == expected


class TestOlderProducers:
    @pytest.fixture
    def collector_with_route(self, tmp_path: Path) -> Iterator[tuple[Records, object]]:
        sink = logging.FileHandler(tmp_path / "app.log")
        sink.setFormatter(logging.Formatter(FORMAT))
        route = Records()
        with serve([sink], routes=Routes({"lib": ([route], True)})) as (_, address):
            yield route, address
        sink.close()

    @staticmethod
    def answer(address: object, **hello: object) -> dict[str, object]:
        sock = connect(address)  # type: ignore[arg-type]
        try:
            body = {"v": PROTOCOL_VERSION, "host": "h", "pid": 4242, "start": 1.0, **hello}
            sock.sendall(encode_json(KIND_HELLO, body))
            length, _ = struct.unpack("<IB", recv_exact(sock, 5))
            config: dict[str, object] = json.loads(recv_exact(sock, length - 1))
            return config
        finally:
            sock.close()

    def test_a_producer_that_does_not_ask_gets_frames_only(
        self, collector_with_route: tuple[Records, object]
    ) -> None:
        """A hello without "routes" (a producer older than routed lines, which would send a
        route logger's records as bare lines) is answered with frames and the structured
        record; one that asks gets line mode and the route loggers' names."""
        _, address = collector_with_route
        old = self.answer(address)
        new = self.answer(address, routes=True)
        assert (old["lines"], old["structured"], "routes" in old) == (None, True, False)
        assert (new["lines"], new["routes"]) == (logging.NOTSET, ["lib"])


class TestUnderRoutes:
    def test_a_name_is_under_a_route_logger_by_its_dotted_ancestors(self) -> None:
        """ "lib" and "lib.sub.x" are under route "lib"; "library", "li" and "" are not."""
        under = UnderRoutes(["lib", "a.b"])
        names = ["lib", "lib.sub.x", "library", "li", "", "a", "a.b.c", "a.bc"]
        assert [under[n] for n in names] == [True, True, False, False, False, False, True, False]

    def test_the_cache_stays_bounded(self) -> None:
        """Ever new logger names do not grow the cache past its bound; answers stay right."""
        under = UnderRoutes(["lib"])
        for n in range(10_000):
            assert under[f"lib.n{n}"]
            assert not under[f"x.n{n}"]
        assert len(under) <= 4096
