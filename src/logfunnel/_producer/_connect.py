"""The producer's side of the handshake: connect, authenticate, say hello.

Every step has the handler's timeout, so an address where nothing (or
something else) listens gives an ``AttachError`` instead of a hang. A
``tls://`` address first makes the connection TLS (``_tls``, which only such
an address imports).
"""

from __future__ import annotations

import os
import socket

from .._protocol._address import ENV_KEY, Address, AttachError
from .._protocol._codec import HEADER, KIND_AUTH, KIND_CONFIG, FrameError, decode_json
from .._protocol._handshake import (
    CHALLENGE_MAGIC,
    GREETING_SIZE,
    NO_CHALLENGE,
    NONCE_SIZE,
    ack_channel_frame,
    answer_challenge,
    auth_frame,
    hello_frame,
)

# typing is for the type checker only: every worker imports this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from typing import Any, Final

__all__ = [
    "CAN_PEEK",
    "HOST",
    "check_open",
    "client_handshake",
    "open_ack_channel",
    "read_nowait",
    "wait_readable",
]

#: This host's name, as producers give it in their hello.
HOST: Final = socket.gethostname()

_DONTWAIT: Final = getattr(socket, "MSG_DONTWAIT", 0)
_PEEK: Final = socket.MSG_PEEK | _DONTWAIT
#: Whether a connection can be checked without blocking (not on Windows).
CAN_PEEK: Final = bool(_DONTWAIT)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise AttachError("the collector closed the connection during the handshake")
        chunks += chunk
    return bytes(chunks)


def _recv_frame(sock: socket.socket, limit: int = 1 << 20) -> tuple[int, bytes]:
    length, kind = HEADER.unpack(_recv_exact(sock, HEADER.size))
    if not 1 <= length <= limit:
        raise FrameError(f"bad handshake frame length {length}")
    return kind, _recv_exact(sock, length - 1)


def open_ack_channel(
    address: Address, token: str, timeout: float, tls: ssl.SSLContext | None = None
) -> socket.socket:
    """The connection on which the collector acknowledges (see ``_handshake.AckChannel``)."""
    sock, _ = _handshake(address, ack_channel_frame(token), timeout, tls)
    return sock


def client_handshake(
    address: Address, hello: dict[str, Any], timeout: float, tls: ssl.SSLContext | None = None
) -> tuple[socket.socket, dict[str, Any]]:
    """Connect, authenticate, say hello; returns the socket and the collector's config.

    Every step has ``timeout``, so an address where nothing (or something
    else) listens gives an ``AttachError`` instead of a hang. ``tls``: the
    context for a ``tls://`` address (None: one from the environment).
    """
    return _handshake(address, hello_frame(hello), timeout, tls)


def _handshake(
    address: Address, hello: bytes, timeout: float, tls: ssl.SSLContext | None = None
) -> tuple[socket.socket, dict[str, Any]]:
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(address.sockaddr)
        except OSError as exc:
            raise AttachError(
                f"no logfunnel collector at {address} ({exc.strerror or exc}); "
                "is the Funnel running, and is this the address it printed?"
            ) from exc
        if address.scheme == "tls":
            from . import _tls

            sock = _tls.wrap(sock, address, tls)
        if address.scheme != "unix":
            _client_authenticate(sock, address)
        sock.sendall(hello)
        kind, body = _recv_frame(sock)
        if kind != KIND_CONFIG:
            raise AttachError(f"unexpected reply from {address} (frame kind {kind})")
        config = decode_json(body)
        if "refused" in config:
            raise AttachError(f"the collector at {address} refused us: {config['refused']}")
        sock.settimeout(None)
        if address.scheme != "unix":
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except TimeoutError as exc:
        sock.close()
        hint = ""
        if address.scheme == "tcp":
            hint = " (a tls:// collector says nothing to a plain tcp:// producer)"
        raise AttachError(
            f"the logfunnel collector at {address} did not answer in {timeout} s{hint}"
        ) from exc
    except (FrameError, OSError) as exc:
        sock.close()
        if isinstance(exc, AttachError):
            raise
        if address.scheme == "tls":
            from . import _tls

            said = _tls.attach_error(exc, address)
            if said is not None:
                raise said from exc
        raise AttachError(f"handshake with {address} failed: {exc}") from exc
    return sock, config


def _client_authenticate(sock: socket.socket, address: Address) -> None:
    """Answer the collector's challenge, and check its answer to ours; over TLS a
    collector that knows producers by their certificates alone sends none."""
    import hmac  # TCP only: a Unix-socket producer never loads it

    if address.key is None and address.scheme == "tcp":
        raise AttachError(f"{address} needs a key: add ?key=HEX to the address or set ${ENV_KEY}")
    try:
        greeting = _recv_exact(sock, GREETING_SIZE)
    except AttachError as exc:
        if address.scheme == "tls":
            raise
        raise AttachError(
            f"the collector at {address} closed the connection before its challenge: "
            "a tls:// collector closes a plain tcp:// producer that does not start TLS"
        ) from exc
    if address.scheme == "tls" and greeting == NO_CHALLENGE:
        return
    if not greeting.startswith(CHALLENGE_MAGIC):
        raise AttachError(f"{address} is not a logfunnel collector")
    if address.key is None:
        raise AttachError(
            f"the collector at {address} asks for a key: add ?key=HEX to the address "
            f"or set ${ENV_KEY}"
        )
    server_nonce = greeting[len(CHALLENGE_MAGIC) :]
    my_nonce = os.urandom(NONCE_SIZE)
    body = answer_challenge(address.key, server_nonce) + my_nonce
    sock.sendall(auth_frame(body))
    kind, reply = _recv_frame(sock)
    if kind != KIND_AUTH or not hmac.compare_digest(reply, answer_challenge(address.key, my_nonce)):
        raise AttachError(f"the collector at {address} failed authentication (wrong key?)")


def check_open(sock: socket.socket) -> None:
    """Over TCP: refuse to send into a connection the collector has ended.

    A collector that stops ends its side first (a FIN) and reads on. A send
    after that would still be accepted by the kernel, then thrown away with
    a reset when the collector closes: a record lost without a trace. So a
    TCP producer looks for the end before each send, and sends the record to
    its fallback instead. (A Unix socket refuses the send itself.)
    """
    try:
        ended = sock.recv(1, _PEEK) == b""
    except (BlockingIOError, InterruptedError):
        return
    if ended:
        raise ConnectionResetError("the collector ended the connection (it is stopping)")


def read_nowait(sock: socket.socket) -> tuple[bytes, bool]:
    """What the collector sent that is waiting now, and whether it ended the connection."""
    chunks = []
    ended = False
    blocking = not _DONTWAIT
    if blocking:
        sock.setblocking(False)
    try:
        while True:
            try:
                data = sock.recv(65536, _DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            if not data:
                ended = True
                break
            chunks.append(data)
            if len(data) < 65536:
                break
    finally:
        if blocking:
            sock.setblocking(True)
    return b"".join(chunks), ended


def wait_readable(sock: socket.socket, timeout: float) -> bool:
    """Whether ``sock`` has something to read (or ended) within ``timeout`` seconds."""
    import select

    return bool(select.select([sock], [], [], max(0.0, timeout))[0])
