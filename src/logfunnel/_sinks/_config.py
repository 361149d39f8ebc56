"""``SinkConfig``: the sinks of a collector as plain data, checked once.

``Funnel``'s shortcuts (a file with size or time rotation, the console, a
format) and a ``logging.config.dictConfig`` dictionary describe sinks that do
not exist yet. The same description serves every place that makes them: the
collector thread of a ``Funnel``, the collector process of
``collector="process"`` (which gets it as JSON, since handler objects cannot
cross processes), and the command line. So its fields are written out once,
checked once when it is made, and turned into handlers by one ``build()``.
"""

from __future__ import annotations

import codecs
import json
import logging
import logging.handlers
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Final
from urllib.parse import urlsplit

from .._files._locked import check_size_rotation
from .._json import JSONFormatter

__all__ = [
    "DEFAULT_FORMAT",
    "OVERFLOW_POLICIES",
    "WHEN_VALUES",
    "SinkConfig",
    "check_otlp_endpoint",
]

#: The line format of the shortcut sinks: who, when, what.
DEFAULT_FORMAT: Final = (
    "%(asctime)s %(processName)s[%(process)d] %(levelname)s %(name)s: %(message)s"
)

#: What a producer does when the collector is behind: wait, or drop and count.
OVERFLOW_POLICIES: Final = ("block", "drop")

#: The ``when`` values of time rotation (``TimedRotatingFileHandler``'s, any case).
WHEN_VALUES: Final = ("S", "M", "H", "D", "MIDNIGHT", *(f"W{day}" for day in range(7)))


@dataclass(frozen=True)
class SinkConfig:
    """Sinks to make: a ``filename`` (rotated by size or time), the ``console``,
    an ``otlp`` endpoint (``logfunnel.otel.OTLPHandler``), and/or the root
    handlers of a dictConfig ``config``; plus the producers' ``overflow``
    policy, which the collector hands on in its handshake.

    ``formatter`` makes the shortcut sinks write JSON lines instead of
    ``fmt``: a ``JSONFormatter``, kept as its options (plain data, so it
    crosses to a collector process), or those options themselves."""

    filename: str | None = None
    console: bool = False
    max_bytes: int = 0
    backups: int = 5
    when: str | None = None
    interval: int = 1
    utc: bool = False
    encoding: str = "utf-8"
    fmt: str = DEFAULT_FORMAT
    datefmt: str | None = None
    formatter: Mapping[str, Any] | JSONFormatter | None = None
    config: Mapping[str, Any] | None = None
    overflow: str = "block"
    otlp: str | None = None

    def __post_init__(self) -> None:
        if self.filename is not None:
            # Absolute now: a collector process may run in another directory.
            object.__setattr__(self, "filename", os.path.abspath(os.fspath(self.filename)))
        if self.overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow must be 'block' or 'drop', not {self.overflow!r}")
        if self.max_bytes and self.when:
            raise ValueError("choose size rotation (max_bytes) or time rotation (when), not both")
        if self.max_bytes < 0 or self.backups < 0:
            raise ValueError("max_bytes and backups cannot be negative")
        check_size_rotation(self.max_bytes, self.backups)
        # Checked here, not first by the handler that build() makes: a collector
        # process or the command line would otherwise learn of it late or not clearly.
        if self.when is not None and self.when.upper() not in WHEN_VALUES:
            raise ValueError(
                f"when must be one of {', '.join(WHEN_VALUES)} (any case), not {self.when!r}"
            )
        if self.interval < 1:
            raise ValueError(f"interval must be 1 or more, not {self.interval}")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {self.encoding!r}") from None
        logging.Formatter(self.fmt, self.datefmt)  # a ValueError names a bad format
        if self.otlp is not None:
            check_otlp_endpoint(self.otlp)
            missing = _missing(_OTEL_MODULES)
            if missing:
                raise ValueError(
                    f"otlp needs OpenTelemetry: pip install 'logfunnel[otel]' (no {missing})"
                )
        if self.formatter is not None:
            object.__setattr__(self, "formatter", _json_options(self.formatter))
            if self.fmt != DEFAULT_FORMAT or self.datefmt is not None:
                raise ValueError(
                    "formatter= writes JSON lines: it does not go with fmt= or datefmt="
                )
        if self.config is not None:
            try:
                json.dumps(self.config)
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"config must be a JSON-safe dictConfig dictionary: {exc}"
                ) from None

    @property
    def has_sinks(self) -> bool:
        """Whether this describes any sink at all."""
        return (
            self.filename is not None
            or self.console
            or self.config is not None
            or self.otlp is not None
        )

    def build(self) -> list[logging.Handler]:
        """The shortcut sinks (file, console), made now; ``config`` is applied by its owner."""
        formatter: logging.Formatter
        if self.formatter is not None:
            assert isinstance(self.formatter, Mapping)
            formatter = JSONFormatter.from_options(self.formatter)
        else:
            formatter = logging.Formatter(self.fmt, self.datefmt)
        sinks: list[logging.Handler] = []
        if self.filename is not None:
            file_sink: logging.Handler
            if self.max_bytes:
                file_sink = logging.handlers.RotatingFileHandler(
                    self.filename,
                    maxBytes=self.max_bytes,
                    backupCount=self.backups,
                    encoding=self.encoding,
                )
            elif self.when:
                file_sink = logging.handlers.TimedRotatingFileHandler(
                    self.filename,
                    when=self.when,
                    interval=self.interval,
                    backupCount=self.backups,
                    encoding=self.encoding,
                    utc=self.utc,
                )
            else:
                file_sink = logging.FileHandler(self.filename, encoding=self.encoding)
            file_sink.setFormatter(formatter)
            sinks.append(file_sink)
        if self.console:
            stream_sink = logging.StreamHandler(sys.stderr)
            stream_sink.setFormatter(formatter)
            sinks.append(stream_sink)
        if self.otlp is not None:
            sinks.append(_otlp_sink(self.otlp))
        return sinks

    def to_json(self) -> dict[str, Any]:
        """Plain data for another process; ``from_json`` gives back an equal config."""
        data = asdict(self)
        data["config"] = None if self.config is None else dict(self.config)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SinkConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def check_otlp_endpoint(endpoint: str) -> None:
    """Raise ValueError unless ``endpoint`` is an http(s) URL with a host."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"an OTLP/HTTP endpoint is an http:// or https:// URL with a host, not {endpoint!r}"
        )


#: What ``logfunnel.otel`` imports, one module of each package of the ``otel`` extra.
_OTEL_MODULES: Final = (
    "opentelemetry.sdk",
    "opentelemetry.exporter.otlp.proto.http",
    "opentelemetry.instrumentation.logging",
)


def _missing(modules: tuple[str, ...]) -> str | None:
    """The first of ``modules`` that cannot be imported here, without importing it."""
    from importlib.util import find_spec

    for name in modules:
        try:
            if find_spec(name) is None:
                return name
        except ImportError:  # a parent package is missing
            return name
    return None


def _otlp_sink(endpoint: str) -> logging.Handler:
    """The OTLP sink; OpenTelemetry is imported only now, and only if asked for."""
    from ..otel import OTLPHandler

    return OTLPHandler(endpoint)


def _json_options(formatter: object) -> dict[str, Any]:
    """A ``JSONFormatter``'s options, checked by making one; a clear error for anything else."""
    if isinstance(formatter, JSONFormatter):
        return formatter.options
    if isinstance(formatter, Mapping):
        unknown = set(formatter) - {"fields", "extras"}
        if unknown:
            raise TypeError(f"unknown JSONFormatter option(s): {', '.join(sorted(unknown))}")
        return JSONFormatter.from_options(formatter).options
    raise TypeError(
        "formatter= takes a logfunnel.JSONFormatter (or its options), not "
        f"{type(formatter).__name__}; a text format is fmt= and datefmt="
    )
