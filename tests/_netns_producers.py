"""Producers on the far side of a network link: ``python _netns_producers.py ADDRESS N COUNT
PACE`` starts N spawn processes that attach to ADDRESS (the key in ``$LOGFUNNEL_KEY``) and
log COUNT numbered records each, PACE seconds apart. It exits 0 only when all of them did.

The network-namespace test runs this inside the producers' namespace with ``ip netns
exec``, so it must be a program of its own, not a function of the test.
"""

from __future__ import annotations

import multiprocessing
import sys

from _serve_workers import attach_and_log

#: How long the producers may take, link outage included.
TIMEOUT = 120


def main(address: str, workers: int, count: int, pace: float) -> int:
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=attach_and_log, args=(address, worker, count, pace))
        for worker in range(workers)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(TIMEOUT)
    codes = [proc.exitcode for proc in procs]
    print(f"producers ended: {codes}", flush=True)
    return 0 if codes == [0] * workers else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
