"""Addresses, listening sockets and the producer side of the handshake.

An address is a short string, so it can travel where an inherited object
cannot (``initargs``, environment variables, spawn pickles):

* ``unix:/path/to/collector.sock`` - the default on POSIX. The socket lives in
  a fresh directory with mode 0700, so only the user can reach it.
* ``tcp://HOST:PORT?key=HEX`` - loopback by default, for Windows and for other
  hosts. Every peer must answer an HMAC-SHA256 challenge with the shared key
  before anything it sends is read as a record; it then checks the collector's
  answer to its own challenge.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from ._codec import (
    HEADER,
    KIND_AUTH,
    KIND_CONFIG,
    KIND_HELLO,
    PROTOCOL_VERSION,
    FrameError,
    decode_json,
    encode_json,
)

__all__ = [
    "ENV_ADDRESS",
    "ENV_KEY",
    "Address",
    "AttachError",
    "answer_challenge",
    "challenge_frame",
    "client_handshake",
    "listen",
    "parse_address",
]

ENV_ADDRESS: Final = "LOGFUNNEL_ADDRESS"
ENV_KEY: Final = "LOGFUNNEL_KEY"

_CHALLENGE_MAGIC: Final = b"LFUNAUTH"
_NONCE_SIZE: Final = 32


class AttachError(ConnectionError):
    """No collector could be reached at an address, or it refused us."""


@dataclass(frozen=True)
class Address:
    """A parsed address.

    ``str()`` is for people: it never shows the key, so it can go into error
    messages, reprs and logs. ``with_key()`` is the form a producer needs,
    a secret to pass as an argument or in the environment, never to print.
    """

    scheme: str  # "unix" or "tcp"
    path: str = ""
    host: str = ""
    port: int = 0
    key: bytes | None = field(default=None, repr=False)

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"

    def with_key(self) -> str:
        """The address with its key, as ``attach()`` takes it."""
        if self.key is None:
            return str(self)
        return f"{self}?key={self.key.hex()}"

    @property
    def family(self) -> int:
        if self.scheme == "unix":
            return socket.AF_UNIX
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    @property
    def sockaddr(self) -> Any:
        return self.path if self.scheme == "unix" else (self.host, self.port)


def parse_address(text: str, key: bytes | str | None = None) -> Address:
    """Parse ``text``; a ``key`` argument or ``$LOGFUNNEL_KEY`` fills a missing key."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"a logfunnel address is a non-empty string, not {text!r}")
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path:
            raise ValueError(f"address {text!r} has no socket path")
        return Address("unix", path=path)
    if text.startswith("tcp://"):
        parts = urlsplit(text)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"address {text!r} must look like tcp://HOST:PORT")
        query = parse_qs(parts.query)
        key_bytes = _key_bytes(key)
        if key_bytes is None and "key" in query:
            key_bytes = _key_bytes(query["key"][0])
        if key_bytes is None and os.environ.get(ENV_KEY):
            key_bytes = _key_bytes(os.environ[ENV_KEY])
        return Address("tcp", host=parts.hostname, port=parts.port, key=key_bytes)
    raise ValueError(f"unknown logfunnel address {text!r}: expected unix:PATH or tcp://HOST:PORT")


def _key_bytes(key: bytes | str | None) -> bytes | None:
    if key is None or isinstance(key, bytes):
        return key
    try:
        return bytes.fromhex(key)
    except ValueError:
        return key.encode()


def listen(spec: str | None, key: bytes | None) -> tuple[socket.socket, Address, str | None]:
    """A listening socket for ``spec`` (None: private Unix socket, or loopback TCP).

    Returns the socket, its address, and the private directory to remove at
    the end (None when there is none).
    """
    if spec is None:
        spec = "unix:" if hasattr(socket, "AF_UNIX") and sys.platform != "win32" else "tcp://"
    if spec == "unix:" or spec.startswith("unix:"):
        path = spec[len("unix:") :]
        private_dir = None
        if not path:
            # mkdtemp creates the directory with mode 0700: other users can
            # neither connect to the socket nor see its name.
            private_dir = tempfile.mkdtemp(prefix="logfunnel-")
            path = os.path.join(private_dir, "collector.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            sock.listen(socket.SOMAXCONN)
        except BaseException:
            sock.close()
            if private_dir is not None:
                shutil.rmtree(private_dir, ignore_errors=True)
            raise
        return sock, Address("unix", path=path), private_dir
    if spec in ("tcp://", "tcp:"):
        spec = "tcp://127.0.0.1:0"
    address = parse_address(spec, key)
    if address.scheme != "tcp":
        raise ValueError(f"cannot listen on {spec!r}")
    if address.key is None:
        address = Address("tcp", host=address.host, port=address.port, key=secrets.token_bytes(32))
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address.sockaddr)
        sock.listen(socket.SOMAXCONN)
    except BaseException:
        sock.close()
        raise
    port = sock.getsockname()[1]
    return sock, Address("tcp", host=address.host, port=port, key=address.key), None


def challenge_frame(nonce: bytes) -> bytes:
    """The collector's first bytes to a TCP peer: magic and a fresh nonce."""
    return _CHALLENGE_MAGIC + nonce


def answer_challenge(key: bytes, nonce: bytes) -> bytes:
    """The HMAC that proves knowledge of ``key`` for ``nonce``."""
    return hmac.new(key, nonce, hashlib.sha256).digest()


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


def client_handshake(
    address: Address, hello: dict[str, Any], timeout: float
) -> tuple[socket.socket, dict[str, Any]]:
    """Connect, authenticate, say hello; returns the socket and the collector's config.

    Every step has ``timeout``, so an address where nothing (or something
    else) listens gives an ``AttachError`` instead of a hang.
    """
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
        if address.scheme == "tcp":
            _client_authenticate(sock, address)
        sock.sendall(encode_json(KIND_HELLO, {"v": PROTOCOL_VERSION, **hello}))
        kind, body = _recv_frame(sock)
        if kind != KIND_CONFIG:
            raise AttachError(f"unexpected reply from {address} (frame kind {kind})")
        config = decode_json(body)
        sock.settimeout(None)
        if address.scheme == "tcp":
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except TimeoutError as exc:
        sock.close()
        raise AttachError(
            f"the logfunnel collector at {address} did not answer in {timeout} s"
        ) from exc
    except (FrameError, OSError) as exc:
        sock.close()
        if isinstance(exc, AttachError):
            raise
        raise AttachError(f"handshake with {address} failed: {exc}") from exc
    return sock, config


def _client_authenticate(sock: socket.socket, address: Address) -> None:
    if address.key is None:
        raise AttachError(f"{address} needs a key: add ?key=HEX to the address or set ${ENV_KEY}")
    greeting = _recv_exact(sock, len(_CHALLENGE_MAGIC) + _NONCE_SIZE)
    if not greeting.startswith(_CHALLENGE_MAGIC):
        raise AttachError(f"{address} is not a logfunnel collector")
    server_nonce = greeting[len(_CHALLENGE_MAGIC) :]
    my_nonce = secrets.token_bytes(_NONCE_SIZE)
    body = answer_challenge(address.key, server_nonce) + my_nonce
    sock.sendall(HEADER.pack(len(body) + 1, KIND_AUTH) + body)
    kind, reply = _recv_frame(sock)
    if kind != KIND_AUTH or not hmac.compare_digest(reply, answer_challenge(address.key, my_nonce)):
        raise AttachError(f"the collector at {address} failed authentication (wrong key?)")


def remove_private_dir(path: str | None, socket_path: str | None) -> None:
    """Remove what ``listen`` created; missing files are fine."""
    if socket_path:
        with contextlib.suppress(OSError):
            os.unlink(socket_path)
    if path:
        shutil.rmtree(path, ignore_errors=True)
