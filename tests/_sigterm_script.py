"""A program ended by SIGTERM while its funnel still holds records (run by test_fidelity_edges).

Usage: python _sigterm_script.py LOG_PATH START_METHOD GATE_FD COUNT

Its one sink holds the collector at the first record until the test writes a
byte to GATE_FD, so records are still on their way when SIGTERM comes (COUNT
must fit in a socket buffer). Once its worker's logging calls have returned,
it prints ``logged ADDRESS`` and waits to be ended.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

import logfunnel


class Gate(logging.FileHandler):
    """A file sink that holds the collector at its first record until the gate opens."""

    def __init__(self, path: str, gate_fd: int) -> None:
        super().__init__(path, encoding="utf-8")
        self.gate_fd: int | None = gate_fd

    def emit(self, record: logging.LogRecord) -> None:
        if self.gate_fd is not None:
            os.read(self.gate_fd, 1)
            self.gate_fd = None
        super().emit(record)


def work(index: int, count: int) -> None:
    log = logging.getLogger("worker")
    for number in range(count):
        log.info("w%d n%d", index, number)


def main() -> None:
    path, method, gate_fd, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    logging.getLogger().setLevel(logging.INFO)
    with logfunnel.Funnel(handlers=[Gate(path, gate_fd)]) as funnel:
        ctx = funnel.context(method)
        # One worker: the gate holds the collector thread, so no other could connect.
        proc = ctx.Process(target=work, args=(0, count))
        proc.start()
        proc.join()
        print("logged", funnel.address, flush=True)
        while True:
            signal.pause()


if __name__ == "__main__":
    main()
