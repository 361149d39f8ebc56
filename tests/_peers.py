"""Raw peers of a collector for the hostile-input tests: no FunnelHandler, just bytes."""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from collections.abc import Iterator
from typing import Any

from logfunnel._collector._listen import listen, remove_private_dir
from logfunnel._collector._loop import Collector
from logfunnel._protocol._address import Address
from logfunnel._protocol._codec import KIND_HELLO, PROTOCOL_VERSION, encode_json, encode_record


@contextlib.contextmanager
def serve(
    sinks: list[logging.Handler], spec: str | None = None, **options: Any
) -> Iterator[tuple[Collector, Address]]:
    """A started collector with the given limits, stopped and cleaned up afterwards."""
    sock, address, private_dir = listen(spec, None)
    collector = Collector(sock, address, sinks, 0, **options)
    collector.start()
    try:
        yield collector, address
    finally:
        collector.stop(30)
        remove_private_dir(private_dir, address.path or None)


def record_frame(message: str, seq: int = 0, **extra: Any) -> bytes:
    record = logging.LogRecord("worker", logging.WARNING, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return encode_record(record, seq)


def hello_frame(version: int = PROTOCOL_VERSION, pid: int = 4242, seq: int = 0) -> bytes:
    return encode_json(
        KIND_HELLO, {"v": version, "host": "h", "pid": pid, "start": 1.0, "seq": seq}
    )


def connect(address: Address) -> socket.socket:
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(address.sockaddr)
    return sock


def handshake(address: Address, pid: int = 4242, seq: int = 0) -> socket.socket:
    """A raw producer connection that has said hello and read the answer."""
    sock = connect(address)
    sock.sendall(hello_frame(pid=pid, seq=seq))
    length, _ = struct.unpack("<IB", recv_exact(sock, 5))
    recv_exact(sock, length - 1)
    return sock


def recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "closed early"
        data += chunk
    return data


def closed_by_peer(sock: socket.socket, timeout: float = 30) -> bool:
    """True once the collector has closed this connection (whatever it had sent before)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True
