"""The startup hook: a Python process started with ``$LOGFUNNEL_ADDRESS`` set attaches itself.

A running ``Funnel`` exports its address, so every process started while it
runs inherits it. The package installs ``logfunnel-startup.pth`` into
site-packages, whose one line calls ``start_from_environment()`` while the
interpreter starts, before any user code; where no ``.pth`` file is
installed (an editable install), the ``sitecustomize`` in ``_bootstrap`` on
``PYTHONPATH`` makes the same call. Either way it acts once a process.

It never breaks a program. A malformed address or an unreachable collector
costs one line on stderr and at most ``STARTUP_TIMEOUT`` seconds, and the
program runs with its records on the stderr fallback, counted.

Once attached, the process is adjusted so that it behaves as without
logfunnel, plus the funnel:

* ``logging.basicConfig``, ``logging.config.dictConfig`` and ``fileConfig``
  work as in a fresh interpreter (the funnel's handler on the root logger
  would make ``basicConfig`` a no-op, and the others would close it), and the
  funnel's handler stays. In a ``multiprocessing`` child the configuration it
  runs again from its parent's main module is the parent's, whose handlers
  the funnel feeds already: their root handlers are set aside, as
  ``attach()`` does, and their levels apply.
* An uncaught exception, in the main thread, another thread or a
  ``multiprocessing`` child's ``run()``, is also an ERROR record with its
  traceback; the usual hook still prints it.

Its ``multiprocessing`` children attach to the funnel it is attached to
(see ``_children``). Processes ``multiprocessing`` keeps for itself stand
down: a resource tracker never attaches, nor does a forkserver (each child
it forks attaches to the address its parent gives it).
"""

from __future__ import annotations

import os
import sys

from .._protocol._address import ENV_ADDRESS

# typing is for the type checker only: this runs in every attached interpreter's start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    import threading
    from collections.abc import Callable, Sequence
    from types import ModuleType, TracebackType
    from typing import Any, Final

__all__ = ["PTH_NAME", "STARTUP_TIMEOUT", "start_from_environment"]

#: How long a starting process waits for the collector's answer.
STARTUP_TIMEOUT: Final = 3.0
#: The file the wheel installs into site-packages.
PTH_NAME: Final = "logfunnel-startup.pth"

_started = False
# A multiprocessing child: configuration it runs is its parent's (see above).
_mp_child = False


def start_from_environment() -> None:
    """Attach this process to ``$LOGFUNNEL_ADDRESS``, once, if it is set; never raise."""
    global _started
    if _started:
        return
    _started = True
    if sys.flags.ignore_environment:  # -E and -I: the environment is not ours to read
        return
    text = os.environ.get(ENV_ADDRESS)
    if not text:
        return
    try:
        _start(text)
    except Exception as exc:
        from ._handler import write_stderr

        write_stderr(f"logfunnel: pid {os.getpid()} not attached: {exc}\n")


def _start(text: str) -> None:
    global _mp_child
    role = _role(getattr(sys, "orig_argv", sys.argv))
    if role == "helper":
        return
    # A forkserver only forks the workers, which inherit what _adjust() does
    # here; each attaches to the address its parent gives it (see _children).
    _mp_child = role in ("child", "forkserver")
    if role != "forkserver":
        from ._attach import attach

        attach(text, timeout=STARTUP_TIMEOUT, fallback=True)
    _adjust()


def _role(argv: Sequence[str]) -> str:
    """What ``argv`` says this process is: "helper", "forkserver", "child" or "program"."""
    code = argv[argv.index("-c") + 1] if "-c" in argv[:-1] else ""
    if "resource_tracker import main" in code or "semaphore_tracker import main" in code:
        return "helper"
    if "forkserver import main" in code:
        return "forkserver"
    if "--multiprocessing-fork" in argv or any("popen_loky" in arg for arg in argv):
        return "child"
    return "program"


# -- what an attached process changes ------------------------------------------------


def _adjust() -> None:
    import logging
    import threading

    from ._imports import when_imported

    logging.basicConfig = _keeping_funnel(logging.basicConfig)
    when_imported("logging.config", _adjust_logging_config)
    when_imported("multiprocessing.process", _adopt_children)
    _chain_excepthooks(sys, threading)


def _adjust_logging_config(module: Any) -> None:
    module.dictConfig = _keeping_funnel(module.dictConfig)
    module.fileConfig = _keeping_funnel(module.fileConfig)


def _adopt_children(module: ModuleType) -> None:
    from ._children import adopt_children

    adopt_children()


def _keeping_funnel(configure: Callable[..., Any]) -> Callable[..., Any]:
    """``configure`` as in a fresh interpreter, with the funnel's handler kept on the root."""
    import functools
    import logging

    from ._attach import attached, set_aside
    from ._handler import FunnelHandler

    @functools.wraps(configure)
    def configure_keeping_funnel(*args: Any, **kwargs: Any) -> Any:
        handler = attached()
        root = logging.getLogger()
        if handler is None or handler not in root.handlers:
            return configure(*args, **kwargs)
        root.removeHandler(handler)
        # dictConfig and fileConfig close every handler logging knows of.
        _unregister(handler)
        try:
            return configure(*args, **kwargs)
        finally:
            logging._addHandlerRef(handler)  # type: ignore[attr-defined]
            # A configuration that puts a FunnelHandler of its own on the root chose it.
            if attached() is handler and not any(
                isinstance(other, FunnelHandler) for other in root.handlers
            ):
                if _mp_child:
                    set_aside(root, root.handlers[:])
                root.addHandler(handler)

    return configure_keeping_funnel


def _unregister(handler: logging.Handler) -> None:
    import logging

    with logging._lock:  # type: ignore[attr-defined]
        refs = logging._handlerList  # type: ignore[attr-defined]
        refs[:] = [ref for ref in refs if ref() is not handler]


def _chain_excepthooks(sys_module: Any, threading: Any) -> None:
    previous = sys_module.excepthook
    previous_thread = threading.excepthook

    def excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if not issubclass(kind, KeyboardInterrupt):
            _crash_record("uncaught exception, the process ends", (kind, exc, tb))
        previous(kind, exc, tb)

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None and not issubclass(args.exc_type, SystemExit):
            name = args.thread.name if args.thread is not None else "?"
            _crash_record(
                f"uncaught exception in thread {name}",
                (args.exc_type, args.exc_value, args.exc_traceback),
            )
        previous_thread(args)

    sys_module.excepthook = excepthook
    threading.excepthook = thread_excepthook


def _crash_record(
    message: str, exc_info: tuple[type[BaseException], BaseException, TracebackType | None]
) -> None:
    import contextlib
    import logging

    # Whatever goes wrong here, the usual hook still prints the exception.
    with contextlib.suppress(Exception):
        logging.getLogger("logfunnel").error(message, exc_info=exc_info)
