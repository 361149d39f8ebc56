"""Ray workers log into a funnel through a ``runtime_env``: the README's two recipes.

Ray starts its workers itself (the raylet forks them from its own worker pool), so
neither a multiprocessing context nor the parent's environment reaches them on a real
cluster: the ``runtime_env`` does. Route one gives them ``LOGFUNNEL_ADDRESS`` and
``LOGFUNNEL_KEY`` for the startup hook; route two a ``worker_process_setup_hook`` that
calls ``attach()``. Both run a real local Ray cluster, so they are in the stress set and
need ``pip install ray``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _ray_tasks import ADDRESS_VARIABLE, attach_from_environment, log_task

import logfunnel
from logfunnel._inherit import BOOTSTRAP_DIR, hook_installed
from logfunnel._protocol._address import parse_address

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.stress, pytest.mark.timeout(300)]

TASKS, COUNT = 20, 50
LINE = re.compile(r"\[(?P<pid>\d+)\] (?P<level>\w+) task: T(?P<task>\d+) N(?P<number>\d+)$")


@pytest.fixture
def funnel(tmp_path: Path) -> Iterator[logfunnel.Funnel]:
    """A TCP funnel at INFO that exports nothing: only the runtime_env reaches the workers."""
    with logfunnel.Funnel(
        tmp_path / "ray.log", listen="tcp://127.0.0.1:0", level="INFO", inherit=False
    ) as running:
        yield running


def run_tasks(runtime_env: dict[str, Any]) -> set[int]:
    """Run the tasks on a fresh two-CPU local cluster; the pids of the workers that ran them."""
    tests = os.path.dirname(os.path.abspath(__file__))
    env_vars = runtime_env.setdefault("env_vars", {})
    paths = [tests] if hook_installed() else [BOOTSTRAP_DIR, tests]
    env_vars["PYTHONPATH"] = os.pathsep.join(paths)
    ray.init(num_cpus=2, include_dashboard=False, runtime_env=runtime_env)
    try:
        remote = ray.remote(log_task)
        return set(ray.get([remote.remote(task, COUNT) for task in range(TASKS)]))
    finally:
        ray.shutdown()


def check(log: Path, pids: set[int]) -> None:
    """Every task's INFO records once, in order, from the workers that ran it; no DEBUG."""
    seen: dict[int, list[int]] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        found = LINE.search(line)
        if found:
            assert found["level"] == "INFO", line
            assert int(found["pid"]) in pids, line
            seen.setdefault(int(found["task"]), []).append(int(found["number"]))
    assert seen == {task: list(range(COUNT)) for task in range(TASKS)}
    assert os.getpid() not in pids


def test_the_startup_hook_route(funnel: logfunnel.Funnel, tmp_path: Path) -> None:
    """runtime_env env_vars with the address and the key: the startup hook attaches every
    worker before it runs a task, at the funnel's level."""
    address = parse_address(funnel.address)
    assert address.key is not None
    env = {"LOGFUNNEL_ADDRESS": str(address), "LOGFUNNEL_KEY": address.key.hex()}
    pids = run_tasks({"env_vars": env})
    funnel.stop()
    check(tmp_path / "ray.log", pids)


def test_the_worker_setup_hook_route(funnel: logfunnel.Funnel, tmp_path: Path) -> None:
    """A worker_process_setup_hook that calls attach() with an address from env_vars."""
    pids = run_tasks(
        {
            "env_vars": {ADDRESS_VARIABLE: funnel.address},
            "worker_process_setup_hook": attach_from_environment,
        }
    )
    funnel.stop()
    check(tmp_path / "ray.log", pids)
