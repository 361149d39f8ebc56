"""What the processes of the startup-hook tests run: importable by name in spawn children."""

from __future__ import annotations

import logging
import os
import sys


def log_lines(tag: str, count: int = 3) -> None:
    """Log ``count`` WARNING records ``TAG n`` from logger ``worker``."""
    log = logging.getLogger("worker")
    for number in range(count):
        log.warning("%s %d", tag, number)


def crash(tag: str) -> None:
    """End with an uncaught exception."""
    raise RuntimeError(f"{tag} crashed")


def plain_children(methods: list[str], tag: str) -> None:
    """Start one plain multiprocessing child per start method; each logs and one crashes."""
    import multiprocessing

    for method in methods:
        ctx = multiprocessing.get_context(method)
        proc = ctx.Process(target=log_lines, args=(f"{tag}-{method}",))
        proc.start()
        proc.join(60)
        assert proc.exitcode == 0, (method, proc.exitcode)
        proc = ctx.Process(target=crash, args=(f"{tag}-{method}",))
        proc.start()
        proc.join(60)
        assert proc.exitcode == 1, (method, proc.exitcode)


def fork_and_log(tag: str) -> None:
    """``os.fork()``: parent and child each log."""
    pid = os.fork()
    if pid == 0:
        log_lines(f"{tag}-forked")
        logging.shutdown()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    log_lines(f"{tag}-parent")


if __name__ == "__main__":
    # python _startup_workers.py FUNCTION ARG...: run one of the above as a program.
    function = globals()[sys.argv[1]]
    args = sys.argv[2:]
    if function is plain_children:
        plain_children(args[0].split(","), args[1])
    else:
        function(*args)
