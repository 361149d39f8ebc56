"""logfunnel: one ordered log from every process, built on stdlib ``logging``.

Start a :class:`Funnel` in the parent; every process that is attached (by the
funnel's multiprocessing context, by ``attach(funnel.address)``, or by being a
fork child of an attached process) sends its records to the funnel's
collector, which hands them to ordinary ``logging.Handler`` sinks.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._collector._loop import CollectorStats
from ._files._locked import LockedFileHandler
from ._files._process import ProcessFileHandler
from ._funnel import DEFAULT_FORMAT, Funnel
from ._producer._attach import attach, attached, detach
from ._producer._context import FunnelContext
from ._producer._handler import FunnelHandler
from ._protocol._address import ENV_ADDRESS, ENV_KEY, AttachError

try:
    __version__ = version("logfunnel")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "DEFAULT_FORMAT",
    "ENV_ADDRESS",
    "ENV_KEY",
    "AttachError",
    "CollectorStats",
    "Funnel",
    "FunnelContext",
    "FunnelHandler",
    "LockedFileHandler",
    "ProcessFileHandler",
    "__version__",
    "attach",
    "attached",
    "detach",
]
