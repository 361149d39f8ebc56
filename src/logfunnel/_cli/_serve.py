"""``logfunnel serve ADDRESS [OPTIONS]``: a standalone collector, for a cluster's head node.

It listens on ADDRESS (``tcp://HOST:PORT`` or ``tls://HOST:PORT``; port 0
takes a free one) with
the sinks the options give (``_sinks``, the same options as ``run``), and
serves until SIGTERM or SIGINT. Workers anywhere ``attach()`` to it with the
address and the key.

The key is a file of hex. ``--key-file FILE`` names it: an existing FILE is
read (it must be readable by its owner only, as ssh asks of a private key);
a FILE that does not exist yet is created with mode 0600 and a new key.
Without ``--key-file`` a new key goes into ``./logfunnel.key``, which must
not exist yet. The key is never printed, nor taken on the command line
(where ``ps`` would show it): the address serve prints has no key, and
producers take it from ``LOGFUNNEL_KEY``.

``tls://`` needs ``--tls-cert FILE`` (and ``--tls-key FILE`` unless the
certificate file holds the key); ``--tls-client-ca FILE`` makes every
producer show a client certificate that CA signed. With a client CA,
``--no-key`` leaves the HMAC key out: certificates alone say who may
connect. Without one, a key is needed (anyone could connect otherwise), and
``--no-key`` is refused. Producers find the CA that signed the certificate in
``LOGFUNNEL_TLS_CA``, their own certificate in ``LOGFUNNEL_TLS_CERT`` and
``LOGFUNNEL_TLS_KEY``.

On stdout, flushed at once so that a script can wait for it, serve says
where the key is, how producers join, and last ``logfunnel serve:
listening on tcp://HOST:PORT`` (the real port). Its own start and stop are
records of logger ``logfunnel`` in its sinks, beside the peers it refused.

Its producers are other programs, on other hosts: they keep their own
levels and logger flags, and send what their own loggers let through. With
``--level`` every producer's root logger takes that level instead, as under
``logfunnel run``.

SIGTERM or SIGINT drains: every record already received is written, the
sinks are flushed and closed, and serve exits 0. It is not a final
collector: producers are not told it stopped, so they keep what was not
acknowledged and send it again to the next serve on the same address with
the same key (a restart, or a start after a crash). serve exports no
address to its own children and does not attach itself as a producer.

Exit status: 0 after a signal; 2 for bad options, a bad address, key file
or TLS file, or an address it cannot listen on.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import socket
import stat
import sys
from types import FrameType
from typing import Any, Final

from .. import ENV_ADDRESS, ENV_KEY, ENV_TLS_CA, ENV_TLS_CERT, ENV_TLS_KEY
from .._funnel import Funnel
from ._sinks import add_sink_arguments, sink_kwargs

__all__ = ["DEFAULT_KEY_FILE", "HELP", "add_arguments", "run"]

HELP = "a standalone collector on a TCP or TLS address: workers on any host attach to it"

#: Where a new key goes without ``--key-file``.
DEFAULT_KEY_FILE: Final = "logfunnel.key"
_KEY_BYTES: Final = 32
_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)


class _Refused(Exception):
    """A bad address or key file: its message, and exit status 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = (
        "logfunnel serve tcp://HOST:PORT [--key-file FILE] [OPTIONS]\n"
        "       logfunnel serve tls://HOST:PORT --tls-cert FILE [--tls-key FILE] "
        "[--tls-client-ca FILE [--no-key]] [--key-file FILE] [OPTIONS]"
    )
    parser.epilog = (
        "SIGTERM or SIGINT drains (every record received is written, sinks flushed and "
        "closed) and exits 0; producers keep what was not acknowledged for the next serve "
        "on the same address and key. Exit status 2 for bad options, address or key file."
    )
    parser.add_argument(
        "address",
        nargs="?",
        metavar="ADDRESS",
        help="tcp://HOST:PORT or tls://HOST:PORT to listen on (HOST 0.0.0.0 for every "
        "interface; port 0: any)",
    )
    parser.add_argument(
        "--key-file",
        metavar="FILE",
        help="the shared key, in hex, readable by its owner only; a FILE that does not "
        f"exist is created (mode 0600) with a new key (default: a new ./{DEFAULT_KEY_FILE})",
    )
    tls = parser.add_argument_group("TLS (with a tls:// ADDRESS)")
    tls.add_argument(
        "--tls-cert", metavar="FILE", help="this collector's certificate (PEM; may hold its key)"
    )
    tls.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    tls.add_argument(
        "--tls-client-ca",
        metavar="FILE",
        help="require a client certificate signed by this CA from every producer (mutual TLS)",
    )
    tls.add_argument(
        "--no-key",
        action="store_true",
        help="with --tls-client-ca: no HMAC key, client certificates alone let producers in",
    )
    add_sink_arguments(parser)


def _say(message: str, out: Any = None) -> None:
    print(f"logfunnel serve: {message}", file=out or sys.stdout, flush=True)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT; the exit status (see the module's docstring)."""
    parser: argparse.ArgumentParser = args._sink_parser
    if not args.address:
        parser.error("no ADDRESS: logfunnel serve tcp://HOST:PORT (or tls://HOST:PORT)")
    options = sink_kwargs(args)
    # Producers keep their own logging set-up unless --level says otherwise.
    mirror = "level" in options
    if options.get("collector") == "process":
        parser.error("--collector process: serve is a collector process already")
    try:
        address = _address(args.address)
        tls = _tls_options(address, args)
        if args.no_key:
            # Not even one this process inherited: a listener takes $LOGFUNNEL_KEY
            # when it is given none.
            os.environ.pop(ENV_KEY, None)
            key, key_path, created = None, "", False
        else:
            key, key_path, created = _key(args.key_file)
    except _Refused as exc:
        _say(str(exc), sys.stderr)
        return 2
    if created:
        _say(f"a new key is in {key_path} (mode 0600)")
    stop = _StopSignals()
    stop.install()
    try:
        try:
            funnel = Funnel(
                **options,
                listen=address,
                key=key,
                attach_main=False,
                inherit=False,
                final=False,
                mirror_loggers=mirror,
                tls_cert=tls.get("tls_cert"),
                tls_key=tls.get("tls_key"),
                tls_client_ca=tls.get("tls_client_ca"),
            ).start()
        except (OSError, ValueError, TypeError, RuntimeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            _say(f"cannot listen on {address}: {reason}", sys.stderr)
            return 2
        try:
            where = _display(funnel)
            funnel._note(
                logging.INFO, "logfunnel serve: listening on %s (pid %d)", where, os.getpid()
            )
            _say(
                f"producers: {_producer_env(key_path, tls)} with attach({where!r}) "
                f"or {ENV_ADDRESS}={where}"
            )
            _say(f"listening on {where}")  # the last line: a script may wait for it
            name = signal.Signals(stop.wait()).name
            funnel._note(logging.INFO, "logfunnel serve: %s: draining and stopping", name)
        finally:
            funnel.stop()
    finally:
        stop.restore()
    _say(f"stopped on {name}; every record received is written", sys.stderr)
    return 0


def _address(text: str) -> str:
    """``tcp://HOST:PORT`` or ``tls://HOST:PORT`` to listen on, checked; the key is only
    ever in its file."""
    from urllib.parse import urlsplit

    scheme = text.split("://", 1)[0]
    if "://" not in text or scheme not in ("tcp", "tls"):
        raise _Refused(f"{text}: serve listens on TCP: give tcp://HOST:PORT or tls://HOST:PORT")
    if "?" in text:
        raise _Refused(f"{text}: the key goes in --key-file, not in the address")
    try:
        parts = urlsplit(text)
        valid = bool(parts.hostname) and parts.port is not None
    except ValueError:  # a port that is not a number, or out of range
        valid = False
    if not valid or parts.path or parts.fragment:
        raise _Refused(f"{text}: the address must look like {scheme}://HOST:PORT")
    return text


def _tls_options(address: str, args: argparse.Namespace) -> dict[str, str]:
    """The funnel's TLS arguments from the options, checked against the address."""
    given = {
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "tls_client_ca": args.tls_client_ca,
    }
    options = {name: value for name, value in given.items() if value}
    if not address.startswith("tls://"):
        if options or args.no_key:
            raise _Refused(f"{address}: the TLS options go with a tls://HOST:PORT address")
        return {}
    if "tls_cert" not in options:
        raise _Refused(f"{address}: TLS needs this collector's certificate: --tls-cert FILE")
    if args.no_key and "tls_client_ca" not in options:
        raise _Refused(
            "--no-key needs --tls-client-ca: with neither a key nor client certificates, "
            "anyone who reaches the port could connect"
        )
    if args.no_key and args.key_file:
        raise _Refused("--no-key and --key-file: give one of them")
    for name, path in options.items():
        if not os.path.isfile(path):
            flag = "--" + name.replace("_", "-")
            raise _Refused(f"{flag} {path}: no such file")
    return options


def _producer_env(key_path: str, tls: dict[str, str]) -> str:
    """What producers set, said in the words of their environment variables."""
    parts = [f"{ENV_KEY}=$(cat {key_path})"] if key_path else []
    if tls:
        parts.append(f"{ENV_TLS_CA}=<the CA file that signed {tls['tls_cert']}>")
    if "tls_client_ca" in tls:
        parts.append(f"{ENV_TLS_CERT}=<a certificate its CA signed> {ENV_TLS_KEY}=<its key>")
    return " ".join(parts)


def _key(path: str | None) -> tuple[bytes, str, bool]:
    """The key, the absolute path of its file, and whether the file was made now."""
    if path is None:
        path = DEFAULT_KEY_FILE
        if os.path.lexists(path):
            raise _Refused(
                f"{os.path.abspath(path)} exists: pass --key-file {path} to use its key, "
                "or remove it for a new one"
            )
    full = os.path.abspath(path)
    if not os.path.lexists(path):
        return _new_key(full), full, True
    return _read_key(full), full, False


def _new_key(path: str) -> bytes:
    key = secrets.token_bytes(_KEY_BYTES)
    try:
        # O_EXCL: an existing file (or a link planted meanwhile) is never written.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise _Refused(f"cannot create the key file {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key.hex() + "\n")
    return key


def _read_key(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if mode & 0o077:
                raise _Refused(
                    f"the key file {path} is open to others (mode {stat.S_IMODE(mode):04o}): "
                    f"it must be readable by its owner only: chmod 600 {path}"
                )
            data = handle.read(4096)
    except OSError as exc:
        raise _Refused(f"cannot read the key file {path}: {exc.strerror or exc}") from None
    try:
        key = bytes.fromhex(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if not key:
        raise _Refused(f"the key file {path} does not hold a key in hex")
    return key


def _display(funnel: Funnel) -> str:
    """The funnel's address without its key (``tcp://HOST:PORT?key=HEX``)."""
    return funnel.address.split("?", 1)[0]


class _StopSignals:
    """SIGTERM and SIGINT, taken over while serve runs: the main thread waits for one.

    Installed before the funnel starts, so that the funnel's own SIGTERM drain
    (which ends the process by SIGTERM) stands aside: serve drains and exits 0.
    """

    def __init__(self) -> None:
        self._read, self._write = socket.socketpair()
        self._read.setblocking(True)
        self._write.setblocking(False)
        self._before: dict[int, Any] = {}
        self._wakeup_before = -1
        self.signum: int | None = None

    def install(self) -> None:
        self._wakeup_before = signal.set_wakeup_fd(self._write.fileno())
        for signum in _SIGNALS:
            self._before[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum

    def wait(self) -> int:
        """Block until SIGTERM or SIGINT came; its number."""
        while self.signum is None:
            # The wake-up byte is written by the C-level handler, so a signal that
            # came just before this read is not missed.
            self._read.recv(64)
        return self.signum

    def restore(self) -> None:
        for signum, handler in self._before.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._wakeup_before)
        self._read.close()
        self._write.close()
