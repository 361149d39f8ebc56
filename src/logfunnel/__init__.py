"""logfunnel: one ordered log from every process, built on stdlib ``logging``.

Start a :class:`Funnel` in the parent; every process that is attached (by the
funnel's multiprocessing context, by ``attach(funnel.address)``, or by being a
fork child of an attached process) sends its records to the funnel's
collector, which hands them to ordinary ``logging.Handler`` sinks.

Every worker imports this package, so its names are imported when first used
(PEP 562): a worker that only attaches never loads the collector, the sinks,
the file strategies or ``importlib.metadata``.
"""

# typing is for the type checker only: every worker imports this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._collector._loop import CollectorStats
    from ._files._locked import LockedFileHandler
    from ._files._process import ProcessFileHandler
    from ._funnel import DEFAULT_FORMAT, Funnel
    from ._json import JSONFormatter
    from ._producer._attach import attach, attached, detach
    from ._producer._context import FunnelContext
    from ._producer._handler import FunnelHandler
    from ._protocol._address import (
        ENV_ADDRESS,
        ENV_KEY,
        ENV_TLS_CA,
        ENV_TLS_CERT,
        ENV_TLS_KEY,
        AttachError,
    )

    __version__: str
del TYPE_CHECKING

#: Where each public name lives.
_WHERE = {
    "CollectorStats": "._collector._loop",
    "DEFAULT_FORMAT": "._funnel",
    "ENV_ADDRESS": "._protocol._address",
    "ENV_KEY": "._protocol._address",
    "ENV_TLS_CA": "._protocol._address",
    "ENV_TLS_CERT": "._protocol._address",
    "ENV_TLS_KEY": "._protocol._address",
    "AttachError": "._protocol._address",
    "Funnel": "._funnel",
    "FunnelContext": "._producer._context",
    "FunnelHandler": "._producer._handler",
    "JSONFormatter": "._json",
    "LockedFileHandler": "._files._locked",
    "ProcessFileHandler": "._files._process",
    "attach": "._producer._attach",
    "attached": "._producer._attach",
    "detach": "._producer._attach",
}

__all__ = [
    "DEFAULT_FORMAT",
    "ENV_ADDRESS",
    "ENV_KEY",
    "ENV_TLS_CA",
    "ENV_TLS_CERT",
    "ENV_TLS_KEY",
    "AttachError",
    "CollectorStats",
    "Funnel",
    "FunnelContext",
    "FunnelHandler",
    "JSONFormatter",
    "LockedFileHandler",
    "ProcessFileHandler",
    "__version__",
    "attach",
    "attached",
    "detach",
]


def __getattr__(name: str) -> "Any":
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value: Any = version("logfunnel")
        except PackageNotFoundError:  # a source tree that is not installed
            value = "0+unknown"
    elif name in _WHERE:
        from importlib import import_module

        value = getattr(import_module(_WHERE[name], __name__), name)
    else:
        raise AttributeError(f"module 'logfunnel' has no attribute {name!r}")
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
