"""Addresses: the short strings that say where a collector listens.

An address is a short string, so it can travel where an inherited object
cannot (``initargs``, environment variables, spawn pickles):

* ``unix:/path/to/collector.sock`` - the default on POSIX. The socket lives in
  a fresh directory with mode 0700, so only the user can reach it.
* ``tcp://HOST:PORT?key=HEX`` - loopback by default, for Windows and for other
  hosts. Every peer must answer an HMAC-SHA256 challenge with the shared key
  before anything it sends is read as a record; it then checks the collector's
  answer to its own challenge.
* ``tls://HOST:PORT?key=HEX`` - TCP inside TLS (the stdlib ``ssl`` module).
  The producer checks the collector's certificate and host name; the
  collector knows producers by the HMAC key, by client certificates, or by
  both. The files TLS needs never travel in the address: a producer reads
  them from ``$LOGFUNNEL_TLS_CA`` (the CA bundle that signed the collector's
  certificate; unset: the system's trust store), and for client certificates
  ``$LOGFUNNEL_TLS_CERT`` and ``$LOGFUNNEL_TLS_KEY``. So the address stays
  short, and holds nothing secret but the key, which ``str()`` never shows.
"""

from __future__ import annotations

import os

# typing is for the type checker only: every worker imports this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final


__all__ = [
    "ENV_ADDRESS",
    "ENV_KEY",
    "ENV_TLS_CA",
    "ENV_TLS_CERT",
    "ENV_TLS_KEY",
    "NETWORK_SCHEMES",
    "Address",
    "AttachError",
    "parse_address",
]

ENV_ADDRESS: Final = "LOGFUNNEL_ADDRESS"
ENV_KEY: Final = "LOGFUNNEL_KEY"
#: A producer's CA bundle for a ``tls://`` collector's certificate (unset: the system's).
ENV_TLS_CA: Final = "LOGFUNNEL_TLS_CA"
#: A producer's client certificate (PEM, may hold its key too) and key, for mutual TLS.
ENV_TLS_CERT: Final = "LOGFUNNEL_TLS_CERT"
ENV_TLS_KEY: Final = "LOGFUNNEL_TLS_KEY"
#: The schemes that cross a network: authenticated, and acknowledged.
NETWORK_SCHEMES: Final = ("tcp", "tls")


class AttachError(ConnectionError):
    """No collector could be reached at an address, or it refused us."""


class Address:
    """A parsed address.

    ``str()`` is for people: it never shows the key, so it can go into error
    messages, reprs and logs. ``with_key()`` is the form a producer needs,
    a secret to pass as an argument or in the environment, never to print.
    """

    __slots__ = ("host", "key", "path", "port", "scheme")

    def __init__(
        self, scheme: str, path: str = "", host: str = "", port: int = 0, key: bytes | None = None
    ) -> None:
        self.scheme = scheme  # "unix", "tcp" or "tls"
        self.path = path
        self.host = host
        self.port = port
        self.key = key

    def _fields(self) -> tuple[object, ...]:
        return (self.scheme, self.path, self.host, self.port, self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Address) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"Address({str(self)!r})"  # never the key

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def with_key(self) -> str:
        """The address with its key, as ``attach()`` takes it."""
        if self.key is None:
            return str(self)
        return f"{self}?key={self.key.hex()}"

    @property
    def family(self) -> int:
        import socket  # the first connection pays for it, not the import

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
    scheme = text.split("://", 1)[0] if "://" in text else ""
    if scheme in NETWORK_SCHEMES:
        from urllib.parse import parse_qs, urlsplit  # TCP only: Unix-socket workers skip it

        try:
            parts = urlsplit(text)
            valid = parts.hostname is not None and parts.port is not None
        except ValueError:  # a port that is not a number, or out of range
            valid = False
        if not valid:
            raise ValueError(f"address {text!r} must look like {scheme}://HOST:PORT")
        query = parse_qs(parts.query)
        key_bytes = _key_bytes(key)
        if key_bytes is None and "key" in query:
            key_bytes = _key_bytes(query["key"][0])
        if key_bytes is None and os.environ.get(ENV_KEY):
            key_bytes = _key_bytes(os.environ[ENV_KEY])
        assert parts.hostname is not None
        assert parts.port is not None
        return Address(scheme, host=parts.hostname, port=parts.port, key=key_bytes)
    raise ValueError(
        f"unknown logfunnel address {text!r}: expected unix:PATH, tcp://HOST:PORT "
        "or tls://HOST:PORT"
    )


def _key_bytes(key: bytes | str | None) -> bytes | None:
    if key is None or isinstance(key, bytes):
        return key
    try:
        return bytes.fromhex(key)
    except ValueError:
        return key.encode()
