"""A collector's TLS: its server context, and a failed handshake told in words.

A ``tls://`` listener has a certificate and its key, and knows its producers
by the HMAC key, by client certificates signed by ``client_ca`` (then
required), or by both. With neither, anyone who can reach the port could
log into it, so ``TLSFiles.check`` refuses that.

``ssl`` is imported by the first TLS listener, not by every funnel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

__all__ = ["TLSFiles", "handshake_failure", "server_context"]


@dataclass(frozen=True)
class TLSFiles:
    """Where a TLS listener's files are: plain data, so it crosses to a collector process."""

    cert: str
    key: str | None = None
    client_ca: str | None = None

    def check(self, has_key: bool) -> None:
        """Refuse a listener that would let anyone in (no HMAC key, no client certificates)."""
        if not has_key and not self.client_ca:
            raise ValueError(
                "a tls:// listener needs a key (HMAC) and/or a client CA (client "
                "certificates): with neither, anyone who reaches the port could connect"
            )

    def to_json(self) -> dict[str, str | None]:
        return {"cert": self.cert, "key": self.key, "client_ca": self.client_ca}


def server_context(files: TLSFiles) -> ssl.SSLContext:
    """The listener's context: its certificate; client certificates required with a client CA.

    A file that cannot be read or does not hold what it should raises
    ``ValueError`` naming it, before anything listens.
    """
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # No TLS 1.3 session tickets: producers do not resume sessions, and a ticket
    # the producer never read would be unread bytes on its records connection.
    context.num_tickets = 0
    try:
        context.load_cert_chain(files.cert, files.key)
    except (OSError, ssl.SSLError) as exc:
        where = files.cert if files.key is None else f"{files.cert} and {files.key}"
        raise ValueError(f"cannot load the TLS certificate and key from {where}: {exc}") from None
    if files.client_ca:
        try:
            context.load_verify_locations(cafile=files.client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load the client CA {files.client_ca}: {exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


# What a peer's failed handshake most likely means, by OpenSSL's reason.
_PLAINTEXT = ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE")
_DISTRUST = (
    "TLSV1_ALERT_UNKNOWN_CA",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
)


def handshake_failure(exc: BaseException) -> str:
    """Why a peer's TLS handshake failed, for the collector's record of the refusal."""
    import ssl

    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"its client certificate failed verification ({exc.verify_message})"
    if isinstance(exc, ssl.SSLEOFError) or not isinstance(exc, ssl.SSLError):
        return (
            "it closed the connection during the TLS handshake (a plain tcp:// producer "
            f"gives up so, waiting for a greeting TLS does not send) ({exc})"
        )
    reason = exc.reason or str(exc)
    if reason in _PLAINTEXT:
        return f"it does not speak TLS (a plaintext tcp:// peer?) ({reason})"
    if reason in _DISTRUST:
        return f"it does not trust this collector's certificate ({reason})"
    if reason in ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "NO_CERTIFICATE_RETURNED"):
        return f"it sent no client certificate, and this collector requires one ({reason})"
    return f"TLS handshake failed ({reason})"
