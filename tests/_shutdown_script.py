"""A program that logs while the interpreter shuts down; run as a plain subprocess.

``python _shutdown_script.py ADDRESS SCENARIO``. Scenarios:

* ``atexit``: records from an atexit handler that runs before ``logging.shutdown``
  and from one that runs after it;
* ``daemon``: a daemon thread still logging, without pause, when the main thread ends;
* ``del``: ``__del__`` methods that log during the interpreter's last garbage
  collection and while ``__main__`` is torn down.

With a third argument, the program waits for a line on stdin before it ends,
so the test can stop the collector first.
"""

from __future__ import annotations

import atexit
import sys


def _after_logging_shutdown() -> None:
    import logging

    logging.getLogger("worker").warning("from an atexit handler run after logging.shutdown")


# Registered before logging is imported, so it runs after logging's own shutdown.
atexit.register(_after_logging_shutdown)

import logging  # noqa: E402
import threading  # noqa: E402

import logfunnel  # noqa: E402

logfunnel.attach(sys.argv[1])
log = logging.getLogger("worker")
scenario = sys.argv[2]


class Noisy:
    """Logs from its finaliser."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __del__(self, log: logging.Logger = log) -> None:
        log.warning("from __del__ of %s", self.name)


if scenario == "atexit":
    atexit.register(log.warning, "from atexit")
elif scenario == "daemon":
    started = threading.Event()

    def chatter() -> None:
        number = 0
        while True:
            log.info("daemon n%d", number)
            number += 1
            if number == 1000:
                started.set()

    threading.Thread(target=chatter, daemon=True).start()
    started.wait()
elif scenario == "del":
    # Collected by the interpreter's last garbage collection, at shutdown.
    cycle: list[object] = [Noisy("a reference cycle")]
    cycle.append(cycle)
    del cycle
    # Torn down with __main__, after the atexit handlers and logging.shutdown.
    noisy = Noisy("a module global")
log.warning("main done")
if len(sys.argv) > 3:
    # Tell the test the main part is done, then wait until it stops the collector.
    print("ready", flush=True)
    sys.stdin.readline()
