"""What a running funnel puts in ``os.environ``, so that every child process finds it.

``LOGFUNNEL_ADDRESS`` (the address without its key) and, for TCP and TLS,
``LOGFUNNEL_KEY`` (and for TLS ``LOGFUNNEL_TLS_CA``, the CA file that
signed the funnel's certificate, when the funnel was given one) are
inherited by every process started while the funnel runs, whatever starts
it; the startup hook (``_producer._startup``) attaches those that run
Python. Where this interpreter's logfunnel came without the
hook's ``.pth`` file, the ``_bootstrap`` directory also goes first on
``PYTHONPATH``, whose ``sitecustomize`` does the same.

Funnels may nest and stop in any order: each export remembers what it
replaced, and an export withdrawn from under a newer one hands what it
remembered to that one, so the environment always ends as it began.
"""

from __future__ import annotations

import contextlib
import os
import site
import sys
import threading

from ._producer._startup import PTH_NAME
from ._protocol._address import ENV_ADDRESS, ENV_KEY, ENV_TLS_CA, Address

__all__ = [
    "BOOTSTRAP_DIR",
    "Export",
    "end_reusable_workers",
    "export",
    "hook_installed",
    "withdraw",
]

#: The directory whose ``sitecustomize`` attaches (see ``_bootstrap``).
BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bootstrap")


class Export:
    """One funnel's variables, and what they replaced (None: unset)."""

    __slots__ = ("before", "values")

    def __init__(self, values: dict[str, str | None]) -> None:
        self.values = values
        self.before: dict[str, str | None] = {}


_lock = threading.Lock()
_exports: list[Export] = []  # oldest first


def hook_installed() -> bool:
    """Whether the ``.pth`` startup hook sits in a site-packages directory of this interpreter."""
    directories = [*getattr(site, "getsitepackages", list)(), site.getusersitepackages()]
    return any(os.path.exists(os.path.join(d, PTH_NAME)) for d in directories if d)


def export(address: Address, tls_ca: str | None = None) -> Export:
    """Put ``address`` (and for TLS the CA file ``tls_ca``) in the environment until
    ``withdraw()``."""
    values: dict[str, str | None] = {
        ENV_ADDRESS: str(address),
        ENV_KEY: address.key.hex() if address.key is not None else None,
    }
    if address.scheme == "tls" and tls_ca is not None:
        values[ENV_TLS_CA] = tls_ca
    if not hook_installed():
        path = os.environ.get("PYTHONPATH")
        parts = [p for p in (path or "").split(os.pathsep) if p and p != BOOTSTRAP_DIR]
        values["PYTHONPATH"] = os.pathsep.join([BOOTSTRAP_DIR, *parts])
    done = Export(values)
    with _lock:
        for name, value in values.items():
            done.before[name] = os.environ.get(name)
            _set(name, value)
        _exports.append(done)
    return done


def withdraw(done: Export) -> None:
    """Undo ``export``; a second call does nothing."""
    with _lock:
        if done not in _exports:
            return
        at = _exports.index(done)
        del _exports[at]
        if at < len(_exports):
            # A newer funnel still runs: it now restores what this one found.
            newer = _exports[at]
            for name, value in done.before.items():
                if name in newer.before:
                    newer.before[name] = value
                elif os.environ.get(name) == done.values[name]:
                    _set(name, value)
            return
        for name, value in done.before.items():
            if os.environ.get(name) == done.values[name]:
                _set(name, value)


#: Where loky (on its own, and inside joblib) keeps the pool it reuses across calls.
_REUSABLE_POOLS = ("joblib.externals.loky.reusable_executor", "loky.reusable_executor")


def end_reusable_workers() -> None:
    """Shut down loky's reusable pool of workers, if this process has one.

    Its workers outlive ``Parallel`` calls and keep the environment they
    started with, so a pool started before a funnel does not log into it, and
    one started during a funnel logs into an address that is gone once the
    funnel stops. A funnel ends the pool when it starts and when it stops; the
    next call starts new workers, which inherit what is current. Waiting for
    them also means their last records are in before the funnel drains.

    loky keeps the pool in a module global (joblib's copy of loky, and loky
    before 3.7), or one pool per thread (``_executor_storage``, loky 3.7 on):
    then it is the pool of the thread that starts or stops the funnel.
    """
    for name in _REUSABLE_POOLS:
        module = sys.modules.get(name)
        storage = getattr(module, "_executor_storage", None)
        for executor in (getattr(module, "_executor", None), getattr(storage, "executor", None)):
            if executor is not None:
                with contextlib.suppress(Exception):
                    executor.shutdown(wait=True)


def _set(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _fork_child() -> None:
    global _lock
    _lock = threading.Lock()


if sys.platform != "win32":
    os.register_at_fork(after_in_child=_fork_child)
