"""A producer's TLS: its client context, the handshake's errors in words, and reading
an acknowledgement channel that is a TLS connection.

Only a ``tls://`` address imports this module, and with it ``ssl``: a worker
on a Unix socket or plain TCP never pays for it.

Where the files come from: the address carries none (it travels in
environment variables, ``initargs`` and pickles, and is printed). A producer
takes them from the environment, as it takes the key: ``$LOGFUNNEL_TLS_CA``
is the CA bundle that signed the collector's certificate (unset: the
system's trust store), ``$LOGFUNNEL_TLS_CERT`` and ``$LOGFUNNEL_TLS_KEY`` its
own certificate and key for a collector that asks for one. A program that
builds its own ``ssl.SSLContext`` hands it to ``attach(tls=...)`` instead.
The collector's host name is always checked against its certificate.
"""

from __future__ import annotations

import os
import select
import socket
import ssl

from .._protocol._address import ENV_TLS_CA, ENV_TLS_CERT, ENV_TLS_KEY, Address, AttachError

__all__ = ["attach_error", "client_context", "read_nowait", "wait_readable", "wrap"]

# Alerts a collector sends when it does not accept our certificate (or our lack of one).
_CERT_REFUSED = (
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "SSLV3_ALERT_HANDSHAKE_FAILURE",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "TLSV1_ALERT_UNKNOWN_CA",
    "TLSV1_ALERT_DECRYPT_ERROR",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE",
)
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
# A look at the kernel's side of a TLS socket, through the plain socket's recv.
_PEEK = socket.MSG_PEEK | _DONTWAIT
_raw_recv = socket.socket.recv

# OpenSSL's codes for a certificate that does not name the host (a name, an IP address).
_HOST_MISMATCH = (62, 64)


def client_context(
    ca: str | None = None, cert: str | None = None, key: str | None = None
) -> ssl.SSLContext:
    """A context that checks the collector's certificate and host name; each file not given
    comes from its environment variable (see the module docstring)."""
    ca = ca or os.environ.get(ENV_TLS_CA) or None
    cert = cert or os.environ.get(ENV_TLS_CERT) or None
    key = key or os.environ.get(ENV_TLS_KEY) or None
    if key and not cert:
        raise AttachError(f"${ENV_TLS_KEY} is set but ${ENV_TLS_CERT} is not: set both")
    try:
        context = ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise AttachError(f"cannot load the CA file {ca} (${ENV_TLS_CA}): {exc}") from exc
    if cert:
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise AttachError(
                f"cannot load the client certificate {cert} (${ENV_TLS_CERT}, "
                f"${ENV_TLS_KEY}): {exc}"
            ) from exc
    return context


def wrap(sock: socket.socket, address: Address, context: ssl.SSLContext | None) -> ssl.SSLSocket:
    """Make ``sock`` a TLS connection to ``address`` (the handshake, within its timeout)."""
    context = context or client_context()
    return context.wrap_socket(sock, server_hostname=address.host)


def attach_error(exc: BaseException, address: Address) -> AttachError | None:
    """An ``AttachError`` that says why TLS failed with ``address``; None if not TLS's doing."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code in _HOST_MISMATCH:
            hint = f"its certificate does not name the host {address.host!r}"
        else:
            hint = f"is ${ENV_TLS_CA} the CA file that signed its certificate?"
        return AttachError(
            f"TLS certificate verification failed for the collector at {address}: "
            f"{str(exc.verify_message).rstrip('.')}; {hint}"
        )
    if not isinstance(exc, ssl.SSLError):
        return None
    reason = exc.reason or str(exc)
    if isinstance(exc, ssl.SSLEOFError):
        return AttachError(
            f"the collector at {address} closed the connection during the TLS handshake "
            "(does it want a client certificate? set "
            f"${ENV_TLS_CERT} and ${ENV_TLS_KEY})"
        )
    if reason in _CERT_REFUSED:
        return AttachError(
            f"the collector at {address} refused our client certificate ({reason}): "
            f"set ${ENV_TLS_CERT} and ${ENV_TLS_KEY} to a certificate its client CA signed"
        )
    return AttachError(
        f"TLS handshake with {address} failed ({reason}): is the collector listening on "
        "tls://? A tcp:// collector answers in plain text"
    )


def read_nowait(sock: socket.socket) -> tuple[bytes, bool]:
    """What the collector sent that is waiting now, and whether it ended the connection.

    ``MSG_DONTWAIT`` does not exist for a TLS socket: the channel, which is
    only ever read, stays non-blocking instead, and is read until TLS wants
    more bytes, so none are left decrypted where ``select`` cannot see them.
    That also means that with nothing decrypted and nothing in the kernel,
    nothing came: a peek at the kernel says so at a third of the cost of a
    TLS read that raises (this runs before every record a producer sends).
    """
    if _DONTWAIT and not sock.pending():  # type: ignore[attr-defined]
        try:
            _raw_recv(sock, 1, _PEEK)
        except (BlockingIOError, InterruptedError):
            return b"", False
    if sock.gettimeout() != 0.0:
        sock.setblocking(False)
    chunks = []
    ended = False
    while True:
        try:
            data = sock.recv(65536)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            break
        if not data:
            ended = True
            break
        chunks.append(data)
    return b"".join(chunks), ended


def wait_readable(sock: socket.socket, timeout: float) -> bool:
    """Whether ``sock`` has something to read (or ended) within ``timeout`` seconds;
    bytes TLS decrypted already count, though ``select`` cannot see them."""
    pending = getattr(sock, "pending", None)
    if pending is not None and pending():
        return True
    return bool(select.select([sock], [], [], max(0.0, timeout))[0])
