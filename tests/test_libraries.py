"""Zero code with the libraries that make processes for you: joblib, loky,
concurrent.futures, multiprocessing pools and Celery's prefork pool.

Each case runs inside a funnel and nothing else: the workers' code has no
logfunnel in it (``_library_workers``). Every record must be in the funnel's
file exactly once, and each process's records in the order it logged them.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import re
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _celery_app
import _library_workers as work
import joblib
import loky
import pytest
from _support import JOIN_TIMEOUT
from joblib.externals.loky.process_executor import TerminatedWorkerError

import logfunnel
from logfunnel._inherit import end_reusable_workers

TESTS = Path(__file__).resolve().parent
# Who logged what: pid and level, then the logger and message.
FORMAT = "%(process)d %(levelname)s %(name)s: %(message)s"
#: Tasks a case runs.
TASKS = 12


def records(path: Path, name: str = "worker") -> list[tuple[int, str]]:
    """The pid and message of each record of logger ``name`` in the funnel's file, in order."""
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"(\d+) [A-Z]+ (\S+): (.*)", line)
        if match and match.group(2) == name:
            found.append((int(match.group(1)), match.group(3)))
    return found


def tasks(tag: str, count: int = TASKS) -> list[str]:
    """What ``log_task`` logs for tasks ``0 .. count-1`` of ``tag``, in the order logged."""
    return [f"{tag} {n} {step}" for n in range(count) for step in range(work.STEPS)]


def check(
    path: Path, expected: list[str], name: str = "worker", *, queue_order: bool = True
) -> dict[int, list[str]]:
    """Every expected record is in the file exactly once and nothing else of ``name``'s is,
    and each process's records are in the order it logged them. Returns them by pid.

    A worker takes its tasks from a queue in the order they were given, so
    ``expected`` (tasks in order, each one's records in order) is the order of
    every worker's own records; where the queue does not keep that order
    (``queue_order=False``), each task's records are still in order.
    """
    found = records(path, name)
    counts = Counter(message for _, message in found)
    missing = sorted(set(expected) - counts.keys())
    doubled = sorted(m for m, c in counts.items() if c > 1)
    unexpected = sorted(counts.keys() - set(expected))
    assert (missing, doubled, unexpected) == ([], [], []), "missing, doubled, unexpected"
    rank = {message: at for at, message in enumerate(expected)}
    by_pid: dict[int, list[str]] = defaultdict(list)
    for pid, message in found:
        by_pid[pid].append(message)
    for pid, messages in by_pid.items():
        runs = [messages]
        if not queue_order:
            tasks = {message.rsplit(" ", 1)[0] for message in messages}
            runs = [[m for m in messages if m.rsplit(" ", 1)[0] == task] for task in tasks]
        for run in runs:
            assert run == sorted(run, key=rank.__getitem__), f"pid {pid} out of order"
    return dict(by_pid)


def worker_pids(by_pid: dict[int, list[str]]) -> set[int]:
    """The pids that logged, which must all be workers, not this process."""
    assert os.getpid() not in by_pid
    return set(by_pid)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """Where the test's funnel writes."""
    return tmp_path / "run.log"


def funnel(path: Path) -> logfunnel.Funnel:
    """The funnel of every case: INFO records of every process into ``path``."""
    return logfunnel.Funnel(path, level="INFO", fmt=FORMAT)


def parallel(tag: str, count: int = TASKS, **options: Any) -> list[int]:
    """A joblib ``Parallel`` run of ``log_task`` over two workers; the pid of each task."""
    pids: list[int] = joblib.Parallel(n_jobs=2, **options)(
        joblib.delayed(work.log_task)(tag, n) for n in range(count)
    )
    return pids


@pytest.fixture(autouse=True)
def _no_reusable_pool_left() -> Iterator[None]:
    """Each case starts and ends without a reusable pool of workers from another case."""
    end_reusable_workers()
    yield
    end_reusable_workers()


class TestJoblib:
    def test_parallel_with_the_default_backend(self, log: Path) -> None:
        """``Parallel(n_jobs=2)`` on joblib's default loky backend: the tasks' records arrive."""
        with funnel(log):
            pids = parallel("loky")
        assert worker_pids(check(log, tasks("loky"))) == set(pids)

    def test_the_reusable_workers_serve_two_calls(self, log: Path) -> None:
        """Two ``Parallel`` calls in one funnel run on the same two workers, and the records
        of both calls arrive."""
        with funnel(log), multiprocessing.Manager() as manager:
            barrier = manager.Barrier(2)
            first = joblib.Parallel(n_jobs=2, batch_size=1)(
                joblib.delayed(work.meet_then_log)("first", n, barrier) for n in range(2)
            )
            second = parallel("second")
        assert len(set(first)) == 2
        assert set(second) <= set(first)
        check(log, tasks("first", 2) + tasks("second"))

    @pytest.mark.parametrize("how", ["exit", "kill"])
    def test_a_worker_that_dies_is_replaced_and_the_new_one_joins(
        self, log: Path, how: str
    ) -> None:
        """A task ends its own worker (``os._exit`` or SIGKILL): what it logged first
        arrives, and so do the records of the workers loky starts in its place."""
        with funnel(log):
            before = parallel("before")
            with pytest.raises(TerminatedWorkerError):
                joblib.Parallel(n_jobs=2)(
                    joblib.delayed(work.end_own_worker)("dead", how) for _ in range(1)
                )
            after = parallel("after")
        assert not set(after) & set(before)
        by_pid = check(log, [*tasks("before"), "dead ends its worker", *tasks("after")])
        (dead,) = [pid for pid, messages in by_pid.items() if "dead ends its worker" in messages]
        assert dead in before
        assert dead not in after

    @pytest.mark.parametrize("library", ["joblib", "loky"])
    def test_each_funnel_gets_only_its_own_runs_records(
        self, tmp_path: Path, library: str, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """A reusable pool started before any funnel, then two funnels in turn in one
        process: each funnel's file has its own run's records, all of them, and a run after
        both have stopped does not send to a funnel that is gone."""

        def run(tag: str) -> list[int]:
            if library == "joblib":
                return parallel(tag)
            executor = loky.get_reusable_executor(max_workers=2)
            return list(executor.map(work.log_task, [tag] * TASKS, range(TASKS)))

        run("unattached")
        with funnel(tmp_path / "a.log"):
            run("a")
        with funnel(tmp_path / "b.log"):
            run("b")
        run("after")
        end_reusable_workers()  # its workers' stderr is read next
        check(tmp_path / "a.log", tasks("a"))
        check(tmp_path / "b.log", tasks("b"))
        assert "collector unreachable" not in capfd.readouterr().err

    def test_the_multiprocessing_backend(self, log: Path) -> None:
        """``Parallel(n_jobs=2, backend="multiprocessing")``: its pool's records arrive."""
        with funnel(log):
            pids = parallel("mp", backend="multiprocessing")
        assert worker_pids(check(log, tasks("mp"))) == set(pids)


class TestLoky:
    def test_the_reusable_executor(self, log: Path) -> None:
        """``loky.get_reusable_executor()``: its workers' records arrive."""
        with funnel(log):
            executor = loky.get_reusable_executor(max_workers=2)
            pids = list(executor.map(work.log_task, ["reused"] * TASKS, range(TASKS)))
        assert worker_pids(check(log, tasks("reused"))) == set(pids)

    def test_the_process_pool_executor(self, log: Path) -> None:
        """``loky.ProcessPoolExecutor`` in a with-block: its workers' records arrive."""
        with funnel(log), loky.ProcessPoolExecutor(max_workers=2) as executor:
            pids = list(executor.map(work.log_task, ["pool"] * TASKS, range(TASKS)))
        assert worker_pids(check(log, tasks("pool"))) == set(pids)


class TestConcurrentFutures:
    def test_the_default_context(self, log: Path) -> None:
        """``ProcessPoolExecutor()`` with the default context: its workers' records arrive."""
        with funnel(log), concurrent.futures.ProcessPoolExecutor(max_workers=2) as executor:
            pids = list(executor.map(work.log_task, ["default"] * TASKS, range(TASKS)))
        assert worker_pids(check(log, tasks("default"))) == set(pids)

    def test_each_start_method(self, log: Path, start_method: str) -> None:
        """``ProcessPoolExecutor(mp_context=multiprocessing.get_context(method))``: its
        workers' records arrive under fork, spawn and forkserver."""
        context = multiprocessing.get_context(start_method)
        with (
            funnel(log),
            concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=context) as executor,
        ):
            pids = list(executor.map(work.log_task, [start_method] * TASKS, range(TASKS)))
        assert worker_pids(check(log, tasks(start_method))) == set(pids)


class TestMultiprocessingPool:
    def test_a_with_pool_block_loses_nothing(self, log: Path, start_method: str) -> None:
        """``with multiprocessing.get_context(method).Pool(2) as pool: pool.map(...)``: the
        block's exit terminates the workers as soon as ``map`` returns, and every record
        they logged is in the file."""
        context = multiprocessing.get_context(start_method)
        with funnel(log), context.Pool(2) as pool:
            pids = pool.map(work.log_task_args, [(start_method, n) for n in range(TASKS)])
        assert worker_pids(check(log, tasks(start_method))) == set(pids)


#: A prefork pool of two, and only tasks through the folder (no gossip, mingle or heartbeat).
WORKER_OPTIONS = [
    "--pool=prefork",
    "--concurrency=2",
    "--loglevel=INFO",
    "--without-gossip",
    "--without-mingle",
    "--without-heartbeat",
]


class TestCelery:
    """Celery's prefork pool, its worker a real ``celery worker`` process: messages and
    results go through files (see ``_celery_app``), so no broker server is needed."""

    def run_worker(self, log: Path, tmp_path: Path, route: str) -> tuple[int, list[int]]:
        """Start a worker in a funnel, have it run ``TASKS`` tasks, end it with Celery's
        warm shutdown (SIGTERM); the worker's pid and each task's."""
        folder = str(tmp_path / "celery")
        app = _celery_app.make_app(folder)
        with funnel(log), open(tmp_path / "worker.out", "w") as output:
            env = dict(os.environ)
            env.update({_celery_app.FOLDER: folder, _celery_app.LOGGING: route})
            env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(TESTS)) if p)
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "_celery_app", "worker", *WORKER_OPTIONS],
                env=env,
                cwd=tmp_path,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            try:
                results = [
                    app.send_task(_celery_app.TASK, args=(route, n, work.STEPS))
                    for n in range(TASKS)
                ]
                pids = [result.get(timeout=JOIN_TIMEOUT) for result in results]
            finally:
                worker.send_signal(signal.SIGTERM)
                try:
                    code = worker.wait(JOIN_TIMEOUT)
                finally:
                    worker.kill()
                    worker.wait()
                app.close()
        assert code == 0, (tmp_path / "worker.out").read_text()
        return worker.pid, pids

    def test_the_prefork_pool_through_the_startup_hook(self, log: Path, tmp_path: Path) -> None:
        """A worker whose Celery leaves logging alone: the startup hook attaches its pool
        processes, and their records arrive, Celery's task loggers' too, with no
        logfunnel code."""
        main, pids = self.run_worker(log, tmp_path, "hook")
        assert main not in pids
        by_pid = check(log, tasks("hook"), queue_order=False)
        assert set(by_pid) == set(pids)
        check(log, [f"hook {n} done" for n in range(TASKS)], name="tasks", queue_order=False)

    def test_the_prefork_pool_attached_at_worker_process_init(
        self, log: Path, tmp_path: Path
    ) -> None:
        """A worker with Celery's own logging (it takes the root logger over): pool processes
        that call ``logfunnel.attach()`` at ``worker_process_init`` send their records."""
        main, pids = self.run_worker(log, tmp_path, "worker_process_init")
        assert main not in pids
        by_pid = check(log, tasks("worker_process_init"), queue_order=False)
        assert set(by_pid) == set(pids)
