"""The handshake, both sides, as bytes: authentication, hello, the collector's answer.

Over TCP the collector speaks first: ``challenge_frame`` (magic and a nonce).
The producer answers with the HMAC of that nonce under the shared key and a
nonce of its own; the collector checks it (``check_auth``) and proves it
knows the key too. Over TLS the collector speaks first as well, once the TLS
handshake is done: the same challenge when it has a key, or
``NO_CHALLENGE`` when client certificates alone say who may connect (a
producer then needs no key). Then, on every transport, the producer says hello (who it
is, which of its handler streams, where its count stands: ``parse_hello``)
and the collector answers with its configuration (``config_frame``).
Nothing here touches a socket.

Versions: a hello says which protocol version the producer speaks. A
collector accepts every version in ``ACCEPTED_VERSIONS`` (this one and the
older ones it still reads); any other gets a refusal that names both sides'
versions (``refusal_frame``), which the producer raises as its
``AttachError``. Features that came later are asked for in the hello and
granted in the answer (acknowledgements: ``"ack"``; line mode beside
routes: ``"routes"``, a producer that sends the route loggers' records as
frames), so either side may be the older one.
"""

from __future__ import annotations

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

# typing is for the type checker only: every worker imports this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

__all__ = [
    "ACCEPTED_VERSIONS",
    "CHALLENGE_MAGIC",
    "GREETING_SIZE",
    "NONCE_SIZE",
    "NO_CHALLENGE",
    "AckChannel",
    "Hello",
    "VersionRefused",
    "ack_channel_frame",
    "answer_challenge",
    "auth_frame",
    "challenge_frame",
    "check_auth",
    "config_frame",
    "hello_frame",
    "parse_hello",
    "refusal_frame",
]

CHALLENGE_MAGIC: Final = b"LFUNAUTH"
#: The producer protocol versions this collector reads.
ACCEPTED_VERSIONS: Final = (PROTOCOL_VERSION,)
NONCE_SIZE: Final = 32
#: The collector's first bytes to a TLS peer it knows by its certificate alone.
NO_CHALLENGE: Final = b"LFUNCERT" + bytes(NONCE_SIZE)
#: The size of either greeting: a challenge, or ``NO_CHALLENGE``.
GREETING_SIZE: Final = len(CHALLENGE_MAGIC) + NONCE_SIZE


class Hello:
    """What a producer says of itself."""

    __slots__ = ("ack", "identity", "routes", "seq", "stream")

    def __init__(
        self,
        identity: tuple[str, int, float],
        stream: tuple[str, int, float, int],
        seq: int,
        ack: bool = False,
        routes: bool = False,
    ) -> None:
        self.identity = identity  # host, pid, process start time
        self.stream = stream  # identity and handler number
        self.seq = seq  # the number its next record carries
        self.ack = ack  # it keeps what it sends until acknowledged, and resends
        # In line mode it sends the records of the route loggers it is told as frames.
        self.routes = routes


class AckChannel:
    """A producer's second connection, on which the collector sends its acknowledgements.

    They do not travel back on the records' own connection: a process that is
    killed with unread bytes in a TCP socket makes the kernel reset that
    connection, which throws away records still in its send queue. So the
    records' connection never carries anything to the producer after the
    handshake, and what would be unread goes to this one.
    """

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token  # from the records' connection's handshake answer


class VersionRefused(FrameError):
    """A hello in a protocol version this collector does not read."""


def challenge_frame(nonce: bytes) -> bytes:
    """The collector's first bytes to a TCP peer: magic and a fresh nonce."""
    return CHALLENGE_MAGIC + nonce


def answer_challenge(key: bytes, nonce: bytes) -> bytes:
    """The HMAC that proves knowledge of ``key`` for ``nonce``."""
    import hashlib  # only TCP peers authenticate: Unix-socket workers never load these
    import hmac

    return hmac.new(key, nonce, hashlib.sha256).digest()


def auth_frame(body: bytes) -> bytes:
    """An authentication frame (either side's)."""
    return HEADER.pack(len(body) + 1, KIND_AUTH) + body


def check_auth(kind: int, body: bytes, key: bytes | None, nonce: bytes) -> bytes:
    """The collector's check of a producer's answer; returns its own proof, to send."""
    if kind != KIND_AUTH or key is None or len(body) != 2 * NONCE_SIZE:
        raise FrameError("peer did not authenticate")
    import hmac

    if not hmac.compare_digest(body[:NONCE_SIZE], answer_challenge(key, nonce)):
        raise FrameError("peer failed authentication (wrong key)")
    return auth_frame(answer_challenge(key, body[NONCE_SIZE:]))


def hello_frame(hello: dict[str, Any]) -> bytes:
    """The producer's hello, in this protocol's version."""
    return encode_json(KIND_HELLO, {"v": PROTOCOL_VERSION, **hello})


def ack_channel_frame(token: str) -> bytes:
    """The hello of a producer's acknowledgement channel (see ``AckChannel``)."""
    return encode_json(KIND_HELLO, {"v": PROTOCOL_VERSION, "acks_for": token})


def parse_hello(body: bytes) -> Hello | AckChannel:
    """A producer's hello, checked: a ``FrameError`` says what is wrong with it."""
    hello = decode_json(body)
    if hello.get("v") not in ACCEPTED_VERSIONS:
        known = ", ".join(map(str, ACCEPTED_VERSIONS))
        raise VersionRefused(
            f"the producer speaks logfunnel protocol {hello.get('v')!r}; this collector "
            f"(protocol {PROTOCOL_VERSION}) reads protocol {known}: use the same logfunnel "
            "release on both sides, or a collector at least as new as its producers"
        )
    if "acks_for" in hello:
        if not isinstance(hello["acks_for"], str):
            raise FrameError("acknowledgement channel hello has a bad token")
        return AckChannel(hello["acks_for"])
    try:
        identity = (str(hello["host"]), int(hello["pid"]), float(hello["start"]))
    except (KeyError, TypeError, ValueError):
        raise FrameError("hello frame lacks host, pid or start") from None
    try:
        seq = int(hello.get("seq", 0))
        stream = (*identity, int(hello.get("stream", 0)))
    except (TypeError, ValueError):
        raise FrameError("hello frame has a bad sequence or stream number") from None
    return Hello(identity, stream, seq, hello.get("ack") is True, hello.get("routes") is True)


def refusal_frame(reason: str) -> bytes:
    """The collector's answer to a hello it will not serve: why, for the producer to raise."""
    return encode_json(KIND_CONFIG, {"v": PROTOCOL_VERSION, "refused": reason})


def config_frame(config: dict[str, Any]) -> bytes:
    """The collector's answer to a hello: what producers must know (level, formats...)."""
    return encode_json(KIND_CONFIG, {"v": PROTOCOL_VERSION, **config})
