"""A TCP proxy that breaks links on purpose: cuts, resets and stalls, chosen at random.

It sits between producers and a collector. Each connection it relays gets a
fault after a random number of bytes from the producer, while the proxy's
fault budget lasts: a cut (both sides closed, as a link that drops), a reset
(an RST to both sides), or a stall (nothing relayed for a while, then on,
nothing lost).
Once the budget is spent it relays faithfully, so a run always ends. Its
random numbers come from a seed, so a failing run can be made again.
"""

from __future__ import annotations

import contextlib
import random
import selectors
import socket
import struct
import threading
import time

__all__ = ["FaultProxy"]

_LINGER_RST = struct.pack("ii", 1, 0)


class FaultProxy:
    """Relay ``127.0.0.1:port`` to ``target``, with ``faults`` faults in all (a planned
    fault counts once it happens: a connection may end before its cut point)."""

    def __init__(
        self,
        target: tuple[str, int],
        *,
        faults: int = 30,
        seed: int = 0,
        cut_after: tuple[int, int] = (1_000, 120_000),
        stall: tuple[float, float] = (0.05, 0.3),
    ) -> None:
        self.target = target
        self.faults_left = faults
        self.cut_after = cut_after
        self.stall = stall
        self.rng = random.Random(seed)
        self.done: dict[str, int] = {"cut": 0, "reset": 0, "stall": 0}
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)

    def __enter__(self) -> FaultProxy:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.listener.close()
        self._acceptor.join(10)
        for thread in self._threads:
            thread.join(10)

    def _accept(self) -> None:
        self.listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            thread = threading.Thread(target=self._relay, args=(client, server), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _plan(self) -> tuple[str, int]:
        """This connection's fault and after how many producer bytes, or ("none", 0)."""
        with self._lock:
            if self.faults_left <= 0:
                return "none", 0
            kind = self.rng.choice(["cut", "reset", "stall"])
            return kind, self.rng.randint(*self.cut_after)

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        kind, after = self._plan()
        relayed = 0
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, server)
        selector.register(server, selectors.EVENT_READ, client)
        try:
            while not self._stop.is_set():
                for key, _ in selector.select(0.1):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = source.recv(65536)
                    if not data:
                        return
                    if source is client and kind != "none" and relayed + len(data) >= after:
                        # The fault falls inside this read: what comes before it goes on.
                        cut = after - relayed
                        server.sendall(data[:cut])
                        if self._fault(kind, client, server):
                            return
                        # A stall: the rest goes on, late, and this link's next fault is planned.
                        data, relayed = data[cut:], after
                        kind, more = self._plan()
                        after = relayed + more
                    if source is client:
                        relayed += len(data)
                    if data:
                        key.data.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            client.close()
            server.close()

    def _fault(self, kind: str, client: socket.socket, server: socket.socket) -> bool:
        """Break the link, while the budget lasts; True if the connection is over."""
        with self._lock:
            if self.faults_left <= 0:
                return False
            self.faults_left -= 1
            self.done[kind] += 1
        if kind == "stall":
            time.sleep(self.rng.uniform(*self.stall))
            return False
        if kind == "reset":
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        return True
