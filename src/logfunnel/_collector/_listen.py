"""Listening sockets: a private Unix socket, or TCP with a fresh key.

``listen`` returns the socket, its address, and the private directory to
remove at the end; ``remove_private_dir`` removes it.

Windows has no Unix sockets, so there the default is loopback TCP. Setting
``LOGFUNNEL_TRANSPORT=tcp`` makes it the default elsewhere too: that is how
the Windows path runs, and is tested, on Linux.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import sys
import tempfile

from .._protocol._address import Address, parse_address

__all__ = ["ENV_TRANSPORT", "default_spec", "listen", "remove_private_dir"]

#: Set to "tcp" to make loopback TCP the default transport, as on Windows.
ENV_TRANSPORT = "LOGFUNNEL_TRANSPORT"


def default_spec() -> str:
    """Where a collector listens when not told: a private Unix socket, or loopback TCP."""
    forced = os.environ.get(ENV_TRANSPORT, "").strip().lower()
    if forced not in ("", "tcp", "unix"):
        raise ValueError(f"${ENV_TRANSPORT} must be 'tcp' or 'unix', not {forced!r}")
    unix = hasattr(socket, "AF_UNIX") and sys.platform != "win32"
    return "tcp://" if forced == "tcp" or not unix else "unix:"


def listen(spec: str | None, key: bytes | None) -> tuple[socket.socket, Address, str | None]:
    """A listening socket for ``spec`` (None: private Unix socket, or loopback TCP).

    Returns the socket, its address, and the private directory to remove at
    the end (None when there is none).
    """
    if spec is None:
        spec = default_spec()
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


def remove_private_dir(path: str | None, socket_path: str | None) -> None:
    """Remove what ``listen`` created; missing files are fine."""
    if socket_path:
        with contextlib.suppress(OSError):
            os.unlink(socket_path)
    if path:
        shutil.rmtree(path, ignore_errors=True)
