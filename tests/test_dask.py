"""logfunnel.dask: every worker of a real ``distributed.LocalCluster`` logs into a funnel.

The cluster has worker processes under nannies, as a real deployment does.
Starting one costs seconds, so the default run shares one cluster (spawn,
distributed's default) across this module; each test starts its own funnel
and detaches the workers at its end. The funnels never export their address
(``inherit=False``): a worker that the nanny starts must be attached by the
plugin, not by the startup hook. fork and forkserver workers run under
``stress``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _dask_workers as tasks
import pytest
from _support import FORCED_TCP, JOIN_TIMEOUT, FileRecords, Records

import logfunnel

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None, reason="needs distributed"
)

# Imported by _imported_here, not at collection: importing distributed puts stderr
# handlers on its loggers, and a funnel takes loggers with handlers for routes, which
# turn line mode off. Present through the whole suite, they would change what every
# other test file tests.
distributed: Any = None
dask: Any = None
attach_workers: Any = None
detach_workers: Any = None
PLUGIN_NAME = "logfunnel"


@pytest.fixture(scope="module", autouse=True)
def _imported_here() -> Iterator[None]:
    """Import distributed for this module only; its loggers' handlers go with it."""
    global distributed, dask, attach_workers, detach_workers
    before = {
        logger: (logger.handlers[:], logger.level, logger.propagate, logger.disabled)
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    }
    import dask as dask_module
    import distributed as distributed_module

    import logfunnel.dask

    distributed, dask = distributed_module, dask_module
    attach_workers, detach_workers = logfunnel.dask.attach_workers, logfunnel.dask.detach_workers
    assert logfunnel.dask.PLUGIN_NAME == PLUGIN_NAME
    yield
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            handlers, level, propagate, disabled = before.get(
                logger, ([], logging.NOTSET, True, False)
            )
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
            logger.disabled = disabled


TRANSPORTS = ["tcp"] if FORCED_TCP else ["unix", "tcp"]


def _cluster() -> Any:
    """Two worker processes under nannies, started by the configured multiprocessing method."""
    return distributed.LocalCluster(
        processes=True,
        n_workers=2,
        threads_per_worker=2,
        dashboard_address=":0",  # any free port: never a clash with another cluster's 8787
        worker_dashboard_address=None,
    )


@pytest.fixture(scope="module")
def spawn_cluster() -> Iterator[tuple[Any, Any]]:
    """One cluster of two nanny-run worker processes (spawn), and a client of it."""
    with (
        dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}),
        _cluster() as cluster,
        distributed.Client(cluster) as client,
    ):
        yield cluster, client


@pytest.fixture
def client(spawn_cluster: tuple[Any, Any]) -> Iterator[Any]:
    """The shared cluster's client; no plugin is left registered after a test."""
    _, dask_client = spawn_cluster
    yield dask_client
    detach_workers(dask_client)


def _funnel(transport: str, sink: logging.Handler) -> logfunnel.Funnel:
    listen = "tcp://127.0.0.1:0" if transport == "tcp" else None
    # Neither exported nor attached here: a process attached to a funnel attaches the
    # multiprocessing children it starts, the nannies' workers among them.
    return logfunnel.Funnel(handlers=[sink], inherit=False, attach_main=False, listen=listen)


def _workers(client: Any) -> list[str]:
    return sorted(client.scheduler_info(n_workers=-1)["workers"])


def _wait_until(what: Callable[[], bool], why: str, timeout: float = JOIN_TIMEOUT) -> None:
    """Wait for a condition of the cluster that has no event to wait on."""
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, f"timed out waiting until {why}"
        time.sleep(0.05)


class Gate:
    """A Unix socket that tasks connect to and wait on until the test opens it: the
    gate of ``_dask_workers.log_task``. Once open, it lets later connections straight through."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="lf-gate-")
        self.path = os.path.join(self._dir, "gate")
        self._server = socket.socket(socket.AF_UNIX)
        self._server.bind(self.path)
        self._server.listen(16)
        self._lock = threading.Lock()
        self._open = False
        self._waiting: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:  # closed
                return
            with self._lock:
                if self._open:
                    self._let_through(conn)
                else:
                    self._waiting.append(conn)

    @staticmethod
    def _let_through(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:  # a killed task's connection is gone
            conn.sendall(b"1")

    def open(self) -> None:
        with self._lock:
            self._open = True
            for conn in self._waiting:
                self._let_through(conn)
            self._waiting.clear()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        self._thread.join(JOIN_TIMEOUT)
        shutil.rmtree(self._dir, ignore_errors=True)


# -- reading the sink back -------------------------------------------------------------


def _runs(sink: Records) -> tuple[dict[tuple[int, str], list[int]], dict[int, list[int]]]:
    """Each run's record numbers, by (task, attempt); each process's, by pid; in arrival order."""
    runs: dict[tuple[int, str], list[int]] = defaultdict(list)
    processes: dict[int, list[int]] = defaultdict(list)
    with sink.changed:
        records = sink.records[:]
    for record in records:
        found = tasks.RECORD.fullmatch(record.getMessage())
        if record.name != "worker" or found is None:
            continue
        task, attempt, seq, number = found.groups()
        runs[int(task), attempt].append(int(seq))
        processes[record.process or 0].append(int(number))
    return runs, processes


def _check_runs(sink: Records, finished: dict[int, tuple[str, int]], records: int) -> None:
    """Every finished run's records arrived once and in order, every other run's a
    beginning of them; each worker process's records arrived in the order it logged them."""
    runs, processes = _runs(sink)
    for pid, numbers in processes.items():
        # Consecutive: each process's numbers in this test, none missing, none twice.
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), pid
    for run, seqs in runs.items():
        assert seqs == list(range(len(seqs))), run
    for task, (attempt, _) in finished.items():
        assert runs[task, attempt] == list(range(records)), task


def _submit(client: Any, worker: str, *args: Any, **kwargs: Any) -> Any:
    return client.submit(
        tasks.log_task, *args, **kwargs, workers=[worker], allow_other_workers=True, pure=False
    )


def _results(client: Any, futures: list[Any]) -> list[Any]:
    _, not_done = distributed.wait(futures, timeout=JOIN_TIMEOUT)
    assert not not_done
    return list(client.gather(futures))


# -- tests -----------------------------------------------------------------------------


class TestEveryWorker:
    @pytest.mark.parametrize("transport", TRANSPORTS)
    def test_every_record_arrives_once_in_each_workers_order(
        self, client: Any, transport: str
    ) -> None:
        """Tasks on both workers, two at a time in each, log 300 records each: every
        record reaches the funnel's sink once, each worker's in the order it logged them."""
        sink = Records()
        workers = _workers(client)
        with _funnel(transport, sink) as funnel:
            attach_workers(client, funnel)
            futures = [_submit(client, workers[i % 2], i, 300) for i in range(8)]
            results = _results(client, futures)
            detach_workers(client)
        finished = dict(enumerate(results))
        _check_runs(sink, finished, 300)
        pids = set(client.run(os.getpid).values())
        assert {pid for _, pid in results} == pids
        assert set(_runs(sink)[1]) == pids

    def test_workers_send_lines_beside_distributeds_own_handlers(
        self, client: Any, tmp_path: Path
    ) -> None:
        """distributed puts handlers on its own loggers in this process; a funnel started
        here keeps them as routes for those loggers only, so the workers' other records
        go as finished lines (line mode), and every record reaches the file once and in
        order."""
        routes = [
            logger
            for logger in logging.Logger.manager.loggerDict.values()
            if isinstance(logger, logging.Logger) and logger.handlers
        ]
        assert routes  # distributed's own
        sink = FileRecords(tmp_path / "lines.log")
        funnel = _funnel("unix", sink.handler).start()
        try:
            attach_workers(client, funnel)
            assert all(client.run(tasks.sends_lines).values())
            futures = [client.submit(tasks.log_task, i, 200, pure=False) for i in range(4)]
            results = _results(client, futures)
            detach_workers(client)
        finally:
            funnel.stop()
        runs: dict[tuple[int, str], list[int]] = defaultdict(list)
        for message in sink.messages():
            found = tasks.RECORD.fullmatch(message)
            assert found is not None
            runs[int(found[1]), found[2]].append(int(found[3]))
        assert runs == {(i, attempt): list(range(200)) for i, (attempt, _) in enumerate(results)}

    @pytest.mark.stress
    @pytest.mark.parametrize("transport", TRANSPORTS)
    def test_many_records_arrive_once_in_each_workers_order(
        self, client: Any, transport: str
    ) -> None:
        """16 tasks of 5,000 records each, four at a time: every record once, in order."""
        sink = Records()
        workers = _workers(client)
        with _funnel(transport, sink) as funnel:
            attach_workers(client, funnel)
            futures = [_submit(client, workers[i % 2], i, 5000) for i in range(16)]
            results = _results(client, futures)
            detach_workers(client)
        _check_runs(sink, dict(enumerate(results)), 5000)
        assert len(_runs(sink)[0]) == 16

    def test_a_worker_added_by_scaling_attaches(
        self, spawn_cluster: tuple[Any, Any], client: Any
    ) -> None:
        """A worker that ``cluster.scale()`` adds after ``attach_workers`` logs into the funnel."""
        cluster, _ = spawn_cluster
        sink = Records()
        before = _workers(client)
        with _funnel("unix", sink) as funnel:
            attach_workers(client, funnel)
            cluster.scale(3)
            client.wait_for_workers(3, timeout=JOIN_TIMEOUT)
            (added,) = set(_workers(client)) - set(before)
            future = client.submit(tasks.log_task, 0, 5, workers=[added], pure=False)
            ((attempt, pid),) = _results(client, [future])
            detach_workers(client)
        assert pid == client.run(os.getpid, workers=[added])[added]
        _check_runs(sink, {0: (attempt, pid)}, 5)
        cluster.scale(2)
        _wait_until(lambda: len(_workers(client)) == 2, "the cluster is back to two workers")

    def test_detach_stops_delivery_and_restores_the_workers_logging(self, client: Any) -> None:
        """After ``detach_workers``, tasks' records no longer reach the funnel and each
        worker's root logger has its level and handlers back."""
        before = client.run(tasks.root_state)
        sink = Records()
        with _funnel("unix", sink) as funnel:
            attach_workers(client, funnel)
            attached = client.run(tasks.root_state)
            _results(client, [client.submit(tasks.log_task, 0, 3, pure=False)])
            detach_workers(client)
            _results(client, [client.submit(tasks.log_task, 1, 3, pure=False)])
        assert all(names == [*before[w][1], "FunnelHandler"] for w, (_, names) in attached.items())
        assert client.run(tasks.root_state) == before
        assert {task for task, _ in _runs(sink)[0]} == {0}

    def test_attaching_again_replaces_the_plugin(self, client: Any) -> None:
        """A second ``attach_workers`` moves the workers to the new funnel: each record
        reaches it once, and none reaches the first."""
        before = client.run(tasks.root_state)
        first, second = Records(), Records()
        with _funnel("unix", first) as old, _funnel("tcp", second) as new:
            attach_workers(client, old)
            attach_workers(client, new)
            futures = [client.submit(tasks.log_task, i, 20, pure=False) for i in range(4)]
            results = _results(client, futures)
            detach_workers(client)
            # One plugin, not two: removing it leaves no attachment behind.
            assert client.run(tasks.root_state) == before
        assert _runs(first)[0] == {}
        _check_runs(second, dict(enumerate(results)), 20)
        assert len(_runs(second)[0]) == 4

    def test_a_worker_attached_before_stays_attached(self, client: Any) -> None:
        """A worker already attached to the funnel (by the startup hook, or as a child of
        the funnel's process) is not detached by ``detach_workers``: that attachment is
        not the plugin's."""
        sink = Records()
        with _funnel("unix", sink) as funnel:
            client.run(tasks.attach_here, funnel.address)
            try:
                attach_workers(client, funnel)
                detach_workers(client)
                (result,) = _results(client, [client.submit(tasks.log_task, 0, 3, pure=False)])
            finally:
                client.run(logfunnel.detach)
        _check_runs(sink, {0: result}, 3)


class TestWorkerKilled:
    @pytest.mark.parametrize("transport", TRANSPORTS)
    def test_every_record_of_every_finished_task_arrives_once(
        self, client: Any, transport: str
    ) -> None:
        """A worker SIGKILLed while two of its tasks run: the nanny starts it again, it
        attaches, the two tasks run again; every finished task's records arrive once and in
        order, the killed runs' records as far as they got, each worker's in its order."""
        run_kill_scenario(client, transport)


def run_kill_scenario(client: Any, transport: str) -> None:
    sink = Records()
    workers = _workers(client)
    victim = workers[0]
    victim_pid = client.run(os.getpid, workers=[victim])[victim]
    gate = Gate()
    with _funnel(transport, sink) as funnel, contextlib.closing(gate):
        attach_workers(client, funnel)
        futures = [_submit(client, workers[i % 2], i, 40, gate=gate.path) for i in range(4)]

        def all_halfway() -> bool:
            runs = _runs(sink)[0]
            return len(runs) == 4 and all(len(seqs) >= 20 for seqs in runs.values())

        with sink.changed:
            assert sink.changed.wait_for(all_halfway, JOIN_TIMEOUT)
        os.kill(victim_pid, signal.SIGKILL)
        now: set[str] = set()

        def restarted() -> bool:
            now.clear()
            now.update(_workers(client))
            return len(now) == 2 and victim not in now

        _wait_until(restarted, "the nanny has started the killed worker again")
        (restarted_worker,) = now - set(workers)
        gate.open()
        results = _results(client, futures)
        # The restarted worker is attached: a task of its own reaches the funnel.
        ((attempt, new_pid),) = _results(
            client, [client.submit(tasks.log_task, 9, 5, workers=[restarted_worker], pure=False)]
        )
        detach_workers(client)
    _check_runs(sink, dict(enumerate(results)), 40)
    runs, processes = _runs(sink)
    assert runs[9, attempt] == list(range(5))
    finished = {(task, attempt) for task, (attempt, _) in enumerate(results)}
    killed = {run: seqs for run, seqs in runs.items() if run not in finished and run[0] != 9}
    # The two runs cut short on the killed worker, each with its first half at least.
    assert len(killed) == 2
    assert all(20 <= len(seqs) < 40 for seqs in killed.values())
    assert victim_pid in processes
    assert new_pid in processes
    assert new_pid != victim_pid


class TestLevels:
    def test_a_workers_levels_are_the_funnels_process_levels(self, client: Any) -> None:
        """With the root at INFO and ``worker.chatty`` at DEBUG in the funnel's process, a
        task on a worker sends exactly the records the same code logs in that process."""
        logging.getLogger().setLevel(logging.INFO)
        logging.getLogger("worker.chatty").setLevel(logging.DEBUG)
        here = Records()
        logging.getLogger().addHandler(here)
        tasks.log_levels("one")  # in one process
        logging.getLogger().removeHandler(here)
        sink = Records()
        with _funnel("unix", sink) as funnel:
            attach_workers(client, funnel)
            _results(client, [client.submit(tasks.log_levels, "one", pure=False)])
            detach_workers(client)
        expected = ["one worker info", "one worker.chatty debug", "one worker.chatty info"]
        assert here.messages(None) == expected
        # The worker's own loggers (distributed's) follow this process's levels too: their
        # records are not what this test is about.
        assert [r.getMessage() for r in sink.records if r.name.startswith("worker")] == expected


class TestAddress:
    def test_an_unreachable_collector_is_an_error_and_leaves_no_plugin(self, client: Any) -> None:
        """A collector no worker can reach makes ``attach_workers`` raise ``AttachError``
        naming the workers, and the plugin is taken back: no worker stays attached."""
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            port = free.getsockname()[1]
        address = f"tcp://127.0.0.1:{port}?key=" + "ab" * 16
        with pytest.raises(logfunnel.AttachError, match="workers could not attach") as caught:
            attach_workers(client, address, timeout=5)
        assert all(worker in str(caught.value) for worker in _workers(client))
        assert "ab" * 16 not in str(caught.value)
        assert not client.run_on_scheduler(logfunnel.dask._registered, PLUGIN_NAME)
        assert all(
            "FunnelHandler" not in names for _, names in client.run(tasks.root_state).values()
        )

    def test_a_worker_that_joins_later_and_cannot_reach_the_collector_logs_on_stderr(
        self,
        spawn_cluster: tuple[Any, Any],
        client: Any,
        capfd: pytest.CaptureFixture[str],
    ) -> None:
        """A worker added after the collector went away says in one line that it could not
        attach, and its records go to its stderr instead of being lost (those its own levels
        let through: the funnel's levels never reached it)."""
        cluster, _ = spawn_cluster
        before = _workers(client)
        with _funnel("unix", Records()) as funnel:
            attach_workers(client, funnel)
        try:
            cluster.scale(3)
            client.wait_for_workers(3, timeout=JOIN_TIMEOUT)
            (added,) = set(_workers(client)) - set(before)
            future = client.submit(tasks.log_warning, "late", workers=[added], pure=False)
            (pid,) = _results(client, [future])
            detach_workers(client)
        finally:
            cluster.scale(2)
            _wait_until(lambda: len(_workers(client)) == 2, "the cluster is back to two workers")
        err = capfd.readouterr().err
        assert f"logfunnel: pid {pid} could not attach" in err
        assert f"[{pid}] WARNING worker: late warns [logfunnel: collector unreachable]" in err

    def test_the_key_travels_in_the_plugin_unless_told_not_to(
        self, client: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """By default the TCP key is in the plugin the scheduler keeps; with
        ``send_key=False`` it is not, and workers take it from their own LOGFUNNEL_KEY."""
        sink = Records()
        with _funnel("tcp", sink) as funnel:
            key = funnel.address.rsplit("key=", 1)[1]
            attach_workers(client, funnel)
            assert key.encode() in client.run_on_scheduler(_plugin_bytes, PLUGIN_NAME)
            detach_workers(client)
            monkeypatch.setenv(logfunnel.ENV_KEY, key)  # where attach_workers finds it here
            client.run(tasks.set_env, logfunnel.ENV_KEY, key)
            try:
                attach_workers(client, funnel.address.split("?")[0], send_key=False)
                assert key.encode() not in client.run_on_scheduler(_plugin_bytes, PLUGIN_NAME)
                (result,) = _results(client, [client.submit(tasks.log_task, 0, 3, pure=False)])
                detach_workers(client)
            finally:
                client.run(tasks.set_env, logfunnel.ENV_KEY, None)
        _check_runs(sink, {0: result}, 3)

    def test_the_address_comes_from_the_environment_by_default(
        self, client: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without an address, the one a running funnel exported (address and key) is used."""
        sink = Records()
        with logfunnel.Funnel(handlers=[sink], listen="tcp://127.0.0.1:0"):
            attach_workers(client)
            (result,) = _results(client, [client.submit(tasks.log_task, 0, 3, pure=False)])
            detach_workers(client)
        _check_runs(sink, {0: result}, 3)

    def test_bad_addresses_are_refused_before_anything_is_registered(self, client: Any) -> None:
        """No address, a malformed one, and a TCP address with no key at all raise ValueError."""
        for bad in ("", "http://x", "tcp://127.0.0.1"):
            with pytest.raises(ValueError, match="address"):
                attach_workers(client, bad or None)
        with pytest.raises(ValueError, match="no key"):
            attach_workers(client, "tcp://127.0.0.1:9")
        assert not client.run_on_scheduler(logfunnel.dask._registered, PLUGIN_NAME)


def _plugin_bytes(name: str, dask_scheduler: Any) -> bytes:
    plugin: bytes = dask_scheduler.worker_plugins[name]
    return plugin


class TestImports:
    def test_import_logfunnel_never_imports_distributed(self) -> None:
        """``import logfunnel`` and attaching load neither dask nor distributed."""
        code = (
            "import logfunnel, sys\nfrom logfunnel import attach, Funnel\nprint(list(sys.modules))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        assert "'distributed'" not in out
        assert "'dask'" not in out


@pytest.mark.stress
@pytest.mark.parametrize("method", ["fork", "forkserver"])
class TestOtherStartMethods:
    def test_every_record_arrives_and_a_killed_worker_loses_nothing(self, method: str) -> None:
        """Under fork and forkserver workers, the kill scenario holds as under spawn."""
        with (
            dask.config.set({"distributed.worker.multiprocessing-method": method}),
            _cluster() as _,
            distributed.Client(_) as dask_client,
        ):
            try:
                for transport in TRANSPORTS:
                    run_kill_scenario(dask_client, transport)
            finally:
                detach_workers(dask_client)
