"""The Celery app of the Celery tests, for ``celery -A _celery_app worker``: no broker server.

Messages and results are files in the folder ``$CELERY_TEST_FOLDER`` (kombu's
filesystem transport, Celery's file result backend), so a worker process and
the test's process talk through it. ``$CELERY_TEST_LOGGING`` says how the
worker meets the funnel, as the README's recipes do:

* ``hook``: Celery leaves logging alone (a ``setup_logging`` receiver), so
  the startup hook's attachment of every worker process stands, with no
  logfunnel code;
* ``worker_process_init``: Celery configures logging as it does by default,
  and each pool process attaches itself as it starts.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging, worker_process_init
from celery.utils.log import get_task_logger

FOLDER = "CELERY_TEST_FOLDER"
LOGGING = "CELERY_TEST_LOGGING"

#: The task, by name: the test's process sends it without importing its code.
TASK = "logfunnel_tests.log_task"


def make_app(folder: str) -> Celery:
    """A Celery app whose broker and results are files under ``folder``."""
    messages = os.path.join(folder, "messages")
    for part in ("messages", "processed", "control", "results"):
        os.makedirs(os.path.join(folder, part), exist_ok=True)
    app = Celery("logfunnel_tests")
    app.conf.update(
        broker_url="filesystem://localhost//",
        broker_transport_options={
            "data_folder_in": messages,
            "data_folder_out": messages,
            "processed_folder": os.path.join(folder, "processed"),
            "store_processed": False,
            "control_folder": os.path.join(folder, "control"),
        },
        result_backend="file://" + os.path.join(folder, "results"),
        broker_connection_retry_on_startup=True,
    )
    return app


def leave_logging_alone(**kwargs: Any) -> None:
    """Connected to ``setup_logging``: Celery then configures no logging of its own."""


def attach_pool_process(**kwargs: Any) -> None:
    """Connected to ``worker_process_init``: the pool process attaches to the funnel."""
    import logfunnel

    logfunnel.attach()


if os.environ.get(FOLDER):  # the worker's process
    app = make_app(os.environ[FOLDER])
    if os.environ.get(LOGGING) == "worker_process_init":
        worker_process_init.connect(attach_pool_process, weak=False)
    else:
        setup_logging.connect(leave_logging_alone, weak=False)

    log = logging.getLogger("worker")
    task_log = get_task_logger("tasks")

    @app.task(name=TASK)
    def log_task(tag: str, number: int, steps: int) -> int:
        """Log ``steps`` INFO records ``TAG NUMBER STEP``, then one on Celery's task
        logger; return this pool process's pid."""
        for step in range(steps):
            log.info("%s %d %d", tag, number, step)
        task_log.info("%s %d done", tag, number)
        return os.getpid()
