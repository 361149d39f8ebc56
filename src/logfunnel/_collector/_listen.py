"""Listening sockets: a private Unix socket, TCP with a fresh key, or TLS.

``listen`` returns the socket, its address, and the private directory to
remove at the end; ``remove_private_dir`` removes it. A ``tls://`` listener
is a TCP one whose connections the collector makes TLS (``_tls``): it needs
its certificate files, and a key or a client CA; it gets no fresh key of its
own, since its producers on other hosts could not know it.

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

from .._protocol._address import NETWORK_SCHEMES, Address, parse_address

# typing is for the type checker only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._tls import TLSFiles

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


def listen(
    spec: str | None, key: bytes | None, tls: TLSFiles | None = None
) -> tuple[socket.socket, Address, str | None]:
    """A listening socket for ``spec`` (None: private Unix socket, or loopback TCP).

    Returns the socket, its address, and the private directory to remove at
    the end (None when there is none). ``tls``: the files of a ``tls://``
    listener, checked here; they go with no other scheme.
    """
    if spec is None:
        spec = default_spec()
    if tls is not None and not spec.startswith("tls:"):
        raise ValueError(f"TLS certificate files go with a tls:// address, not {spec!r}")
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
    if address.scheme not in NETWORK_SCHEMES:
        raise ValueError(f"cannot listen on {spec!r}")
    if address.scheme == "tls":
        if tls is None:
            raise ValueError(f"{address} needs a certificate and its key to listen with")
        tls.check(address.key is not None)
    elif address.key is None:
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
    return sock, Address(address.scheme, host=address.host, port=port, key=address.key), None


def remove_private_dir(path: str | None, socket_path: str | None) -> None:
    """Remove what ``listen`` created; missing files are fine."""
    if socket_path:
        with contextlib.suppress(OSError):
            os.unlink(socket_path)
    if path:
        shutil.rmtree(path, ignore_errors=True)
