"""SIGTERM drains the funnel before the process ends.

``docker stop``, systemd and Kubernetes end a program with SIGTERM. Its
default action kills the process at once: the collector thread dies with
records still in its producers' socket buffers, and the private socket
directory stays behind. So while a funnel runs, the process that owns it
catches SIGTERM, stops every running funnel (drain, flush, close, clean up),
then puts the default action back and sends itself SIGTERM again, so the
program still ends as SIGTERM ends it (exit status -15, no Python clean-up).

It stands aside wherever taking SIGTERM over would change the program:

* only while SIGTERM has its default action: a handler the program
  installed itself is never replaced, and it is left alone if the program
  installs one later;
* only in the main thread (Python runs signal handlers there) of the process
  that started the funnel. A fork child gets the default action back at once:
  ``Pool.terminate()`` sends its workers SIGTERM and waits for them, and a
  Python-level handler would only run once a worker's C code returned.
  SIGTERM is blocked in the forking thread across ``fork()``: one that
  reaches a child before its fork handlers have run (a pool terminated
  right after it started) would meet this handler, which Python then drops,
  and the child would live on; held until the default action is back, it
  ends the child as it would without a funnel.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import weakref
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._funnel import Funnel

__all__ = ["SigtermDrain"]

_SIGTERM = getattr(signal, "SIGTERM", None)


class SigtermDrain:
    """The SIGTERM handler of one process, installed while some funnel runs."""

    def __init__(self) -> None:
        self._funnels: list[weakref.ref[Funnel]] = []
        self._stops = 0  # stop() calls under way, in any thread
        self._pending = False  # SIGTERM arrived during one of them
        self._lock = threading.Lock()
        # Per forking thread: whether its fork blocked SIGTERM (see _before_fork).
        self._forking = threading.local()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(
                before=self._before_fork,
                after_in_parent=self._unblock,
                after_in_child=self._after_fork_in_child,
            )

    def _installed(self) -> bool:
        return _SIGTERM is not None and signal.getsignal(_SIGTERM) == self._on_signal

    def add(self, funnel: Funnel) -> None:
        """Drain ``funnel`` on SIGTERM, installing the handler if SIGTERM is still default."""
        if _SIGTERM is None or threading.current_thread() is not threading.main_thread():
            return
        if not self._installed():
            try:
                if signal.getsignal(_SIGTERM) is not signal.SIG_DFL:
                    return  # the program handles SIGTERM itself
                signal.signal(_SIGTERM, self._on_signal)
            except (ValueError, OSError):
                return
        self._funnels.append(weakref.ref(funnel))

    def discard(self, funnel: Funnel) -> None:
        """Forget ``funnel``; the last one gone gives SIGTERM its default action back.

        From a thread other than the main one the handler cannot be removed;
        it then stays, doing what the default action does (end the process)
        once the main thread runs it, and the next funnel takes it over.
        """
        self._funnels = [ref for ref in self._funnels if ref() not in (None, funnel)]
        if not self._installed():
            return
        if self._pending and not self._stops:
            self._finish()  # a SIGTERM waited for this stop
        elif not self._funnels:
            self._uninstall()

    @contextlib.contextmanager
    def stopping(self) -> Iterator[None]:
        """Mark a ``stop()`` under way: a SIGTERM now waits for it instead of cutting it short."""
        with self._lock:
            self._stops += 1
        try:
            yield
        finally:
            with self._lock:
                self._stops -= 1

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._pending = True
        if not self._stops:
            self._finish()
        # Else a stop() is under way (perhaps the one this handler interrupted):
        # it ends the process once it is done, in discard().

    def _finish(self) -> None:
        """Stop every funnel left, innermost first, then end the process by SIGTERM."""
        self._pending = False
        funnels, self._funnels = self._funnels, []
        for ref in reversed(funnels):
            funnel = ref()
            if funnel is not None:
                funnel.stop()
        self._uninstall()
        # From another thread the default action cannot be put back; the
        # signal then comes to _on_signal in the main thread, which ends it.
        os.kill(os.getpid(), _SIGTERM)  # type: ignore[arg-type]

    def _uninstall(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            if self._installed():
                signal.signal(_SIGTERM, signal.SIG_DFL)  # type: ignore[arg-type]

    def _before_fork(self) -> None:
        """Hold SIGTERM in this thread until the child has the default action back."""
        self._forking.blocked = False
        if _SIGTERM is not None and self._installed() and hasattr(signal, "pthread_sigmask"):
            before = signal.pthread_sigmask(signal.SIG_BLOCK, {_SIGTERM})
            self._forking.blocked = _SIGTERM not in before

    def _unblock(self) -> None:
        if _SIGTERM is not None and getattr(self._forking, "blocked", False):
            self._forking.blocked = False
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {_SIGTERM})

    def _after_fork_in_child(self) -> None:
        self._funnels = []
        self._stops = 0
        self._pending = False
        self._lock = threading.Lock()
        self._uninstall()
        # A SIGTERM that came since the fork now ends the child, as it would have.
        self._unblock()
