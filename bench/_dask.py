"""Dask: logfunnel.dask against ``Client.forward_logging``, same cluster, same tasks.

The cluster is the one a deployment has: ``dask scheduler`` in a process of
its own and ``dask worker`` with nannies (spawn), so the scheduler's CPU is
measured alone (with ``LocalCluster`` it shares the client's process). One
cluster serves every run; runs are interleaved (repeat 1 of every way, then
repeat 2, ...). Each run:

* sets its way up: ``attach_workers`` to a ``Funnel`` in this process (over a
  Unix socket, or loopback TCP with acknowledgements; ``-noroutes``: a Unix
  socket, the funnel started while the handlers distributed puts on its own
  loggers are set aside, so that producers send finished lines instead of
  frames), or ``forward_logging``
  with the workers' root logger set to INFO (without it, workers drop INFO
  records: their level is not the client's, dask#2592);
* submits one task per worker and thread, each logging ``records`` INFO records
  into logger ``bench`` (on one thread per worker), and waits for them;
* stops the clock when the output has every record: for logfunnel when
  ``Funnel.stop()`` has written all that was sent (the tasks sent every
  record before they returned), for forward_logging at the last record the
  sink got, or once none came for a few seconds (what is missing is lost);
* reads the output back: lost, duplicated and reordered records (per task);
* takes the CPU of the scheduler's process, of the workers' and of this one
  (the client, and logfunnel's collector) over the run.

The sink is the same plain ``FileHandler`` for every way, with logfunnel's
default format, written in this process.
"""

from __future__ import annotations

import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Final

__all__ = ["dask_lines", "measure_dask"]

WAYS: Final = ["logfunnel-dask", "logfunnel-dask-tcp", "logfunnel-dask-noroutes", "forward_logging"]

#: How long the output may stand still before missing records count as lost.
_QUIET: Final = 5.0
_LINE: Final = re.compile(r"\[dask r=(\d+) t=(\d+) s=(\d+)\]")


class _Counter(logging.Filter):
    """Counts what a sink accepts and when, to stop forward_logging's clock on.

    logfunnel's sink gets no filter: a plain ``FileHandler`` lets its producers
    send finished lines (a filter would make the collector format every record).
    """

    def __init__(self) -> None:
        super().__init__()
        self.accepted = 0
        self.last = time.perf_counter()
        self.changed = threading.Condition()

    def filter(self, record: logging.LogRecord) -> bool:
        with self.changed:
            self.accepted += 1
            self.last = time.perf_counter()
            self.changed.notify_all()
        return True

    def wait_for(self, count: int) -> None:
        """Until ``count`` records came, or none came for ``_QUIET`` seconds."""
        with self.changed:
            while self.accepted < count:
                if not self.changed.wait(_QUIET):  # each record notifies: none came
                    return


def _sink(path: Path) -> logging.FileHandler:
    from logfunnel import DEFAULT_FORMAT

    sink = logging.FileHandler(path, encoding="utf-8")
    sink.setFormatter(logging.Formatter(DEFAULT_FORMAT))
    return sink


def bench_task(run: int, task: int, records: int, size: int) -> int:
    """What each task runs on a worker: ``records`` INFO records of about ``size`` bytes."""
    log = logging.getLogger("bench")
    for seq in range(records):
        head = f"[dask r={run} t={task} s={seq}] "
        log.info("%s%s", head, "x" * max(0, size - len(head)))
    return os.getpid()


def worker_level(level: int) -> int:
    """Run on each worker: set the root level (what forward_logging needs); the old one."""
    root = logging.getLogger()
    before = root.level
    root.setLevel(level)
    return before


def _handlers_aside() -> dict[logging.Logger, list[logging.Handler]]:
    """Take the handlers off every named logger; what they were."""
    aside = {}
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and logger.handlers:
            aside[logger] = logger.handlers[:]
            logger.handlers.clear()
    return aside


def _cpu(pid: int) -> float:
    import psutil  # type: ignore[import-untyped]  # distributed's own dependency

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _start_cluster(where: Path, workers: int) -> tuple[list[subprocess.Popen[bytes]], Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGFUNNEL_")}
    scheduler_file = where / "scheduler.json"
    log = open(where / "cluster.err", "ab")  # noqa: SIM115 - the processes' stderr
    quiet = [sys.executable, "-m"]
    scheduler = subprocess.Popen(
        [
            *quiet,
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(scheduler_file),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    worker = subprocess.Popen(
        [
            *quiet,
            "distributed.cli.dask_worker",
            "--scheduler-file",
            str(scheduler_file),
            "--nworkers",
            str(workers),
            "--nthreads",
            "1",
            "--no-dashboard",
            "--host",
            "127.0.0.1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    log.close()
    return [scheduler, worker], scheduler_file


def _one_run(
    client: Any,
    way: str,
    run: int,
    workers: int,
    records: int,
    size: int,
    where: Path,
    scheduler_pid: int,
) -> dict[str, Any]:
    import logfunnel
    import logfunnel.dask

    output = where / f"{way}-{run}.log"
    sink = _sink(output)
    total = workers * records
    root = logging.getLogger()
    funnel: logfunnel.Funnel | None = None
    counter = _Counter()
    if way == "forward_logging":
        root_level = root.level
        root.setLevel(logging.INFO)
        sink.addFilter(counter)
        root.addHandler(sink)
        levels = client.run(worker_level, logging.INFO)
        client.forward_logging()
    else:
        listen = "tcp://127.0.0.1:0" if way.endswith("tcp") else None
        funnel = logfunnel.Funnel(
            handlers=[sink], level="INFO", inherit=False, attach_main=False, listen=listen
        )
        # distributed puts stderr handlers on its loggers at import: to the funnel they are
        # routes, which turn line mode off. -noroutes sets them aside while it starts.
        aside = _handlers_aside() if way.endswith("noroutes") else {}
        funnel.start()
        for logger, handlers in aside.items():
            logger.handlers[:] = handlers
        logfunnel.dask.attach_workers(client, funnel)
    worker_pids = list(client.run(os.getpid).values())
    addresses = sorted(client.scheduler_info(n_workers=-1)["workers"])
    cpu = {
        "scheduler": _cpu(scheduler_pid),
        "workers": sum(_cpu(pid) for pid in worker_pids),
        "client": time.process_time(),
    }
    started = time.perf_counter()
    futures = [
        client.submit(bench_task, run, task, records, size, workers=[address], pure=False)
        for task, address in enumerate(addresses)
    ]
    client.gather(futures)
    if funnel is None:
        counter.wait_for(total)
        seconds = counter.last - started
    else:
        # Everything the tasks logged was sent before they returned: stop() writes it all.
        funnel.stop()
        seconds = time.perf_counter() - started
    cpu = {
        "scheduler": _cpu(scheduler_pid) - cpu["scheduler"],
        "workers": sum(_cpu(pid) for pid in worker_pids) - cpu["workers"],
        "client": time.process_time() - cpu["client"],
    }
    if funnel is None:
        client.unforward_logging()
        root.removeHandler(sink)
        root.setLevel(root_level)
        for address, level in levels.items():
            client.run(worker_level, level, workers=[address])
    else:
        logfunnel.dask.detach_workers(client)
    sink.close()
    return {"seconds": seconds, "cpu_s": cpu, **_read_back(output, run, workers, records)}


def _read_back(path: Path, run: int, tasks: int, records: int) -> dict[str, int]:
    seen: set[tuple[int, int]] = set()
    last = dict.fromkeys(range(tasks), -1)
    duplicated = reordered = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        found = _LINE.search(line)
        if found is None or int(found[1]) != run:
            continue
        task, seq = int(found[2]), int(found[3])
        if (task, seq) in seen:
            duplicated += 1
            continue
        seen.add((task, seq))
        if seq < last[task]:
            reordered += 1
        last[task] = max(last[task], seq)
    return {
        "written": len(seen),
        "lost": tasks * records - len(seen),
        "duplicated": duplicated,
        "reordered": reordered,
    }


def measure_dask(workers: int, records: int, size: int, repeat: int) -> dict[str, Any]:
    """Every way ``repeat`` times, interleaved, on one cluster of ``workers`` workers."""
    import distributed

    with tempfile.TemporaryDirectory(prefix="logfunnel-bench-dask-") as tmp:
        where = Path(tmp)
        processes, scheduler_file = _start_cluster(where, workers)
        try:
            deadline = time.monotonic() + 60
            while not scheduler_file.exists():
                if time.monotonic() > deadline or processes[0].poll() is not None:
                    raise RuntimeError("the dask scheduler did not start")
                time.sleep(0.1)
            client = distributed.Client(scheduler_file=str(scheduler_file))  # type: ignore[no-untyped-call]
            with client:
                client.wait_for_workers(workers, timeout=120)
                samples: dict[str, list[dict[str, Any]]] = {way: [] for way in WAYS}
                run = 0
                for _ in range(repeat):
                    for way in WAYS:
                        run += 1
                        sample = _one_run(
                            client, way, run, workers, records, size, where, processes[0].pid
                        )
                        rate = sample["written"] / sample["seconds"]
                        print(
                            f"[dask {run}/{repeat * len(WAYS)}] {way}: {rate:,.0f} records/s, "
                            f"{sample['lost']} lost, scheduler {sample['cpu_s']['scheduler']:.2f}"
                            " s CPU",
                            file=sys.stderr,
                            flush=True,
                        )
                        samples[way].append(sample)
                client.shutdown()  # type: ignore[no-untyped-call]
        finally:
            for process in processes:
                if process.poll() is None:
                    process.terminate()
            for process in processes:
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
    return {
        "workers": workers,
        "records": records,
        "size": size,
        "repeat": repeat,
        "rows": [_row(way, runs, workers * records) for way, runs in samples.items()],
    }


def _row(way: str, runs: list[dict[str, Any]], total: int) -> dict[str, Any]:
    def median(values: list[float]) -> float:
        return statistics.median(values)

    return {
        "way": way,
        "records_per_s": median([r["written"] / r["seconds"] for r in runs]),
        "lost": max(r["lost"] for r in runs),
        "duplicated": max(r["duplicated"] for r in runs),
        "reordered": max(r["reordered"] for r in runs),
        "scheduler_cpu_s": median([r["cpu_s"]["scheduler"] for r in runs]),
        "scheduler_us_per_record": median([r["cpu_s"]["scheduler"] for r in runs]) / total * 1e6,
        "workers_us_per_record": median([r["cpu_s"]["workers"] for r in runs]) / total * 1e6,
        "client_us_per_record": median([r["cpu_s"]["client"] for r in runs]) / total * 1e6,
        "runs": runs,
    }


def dask_lines(result: dict[str, Any]) -> list[str]:
    """The Dask section of the report."""
    lines = [
        f"Dask: {result['workers']} workers (nannies, spawn) x {result['records']:,} records of "
        f"{result['size']} B, one task per worker; medians of {result['repeat']} "
        "interleaved runs, the worst loss",
        f"{'way':<24} {'records/s':>10} {'lost':>7} {'dup':>4} {'reord':>5} "
        f"{'sched CPU s':>11} {'sched µs/rec':>12} {'workers µs/rec':>14} {'client µs/rec':>13}",
    ]
    for row in result["rows"]:
        lines.append(
            f"{row['way']:<24} {row['records_per_s']:>10,.0f} {row['lost']:>7} "
            f"{row['duplicated']:>4} {row['reordered']:>5} {row['scheduler_cpu_s']:>11.2f} "
            f"{row['scheduler_us_per_record']:>12.1f} {row['workers_us_per_record']:>14.1f} "
            f"{row['client_us_per_record']:>13.1f}"
        )
    return lines
