"""Shared fixtures: start methods, and a root logger that no test can leak."""

from __future__ import annotations

import logging
import multiprocessing
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import logfunnel

#: Every start method this platform has; multiprocess tests run under each.
START_METHODS = [
    m for m in ("fork", "spawn", "forkserver") if m in multiprocessing.get_all_start_methods()
]


@pytest.fixture(params=START_METHODS)
def start_method(request: pytest.FixtureRequest) -> str:
    """Each multiprocess test runs once per start method."""
    method: str = request.param
    return method


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Put the root logger (handlers, level) and logfunnel attachments back after each test.

    Each test starts with the root logger at DEBUG, as in a program that
    configured logging: workers take the parent's levels, so a test that
    wants another level sets it, as a program would.
    """
    root = logging.getLogger()
    handlers = root.handlers[:]
    level = root.level
    root.setLevel(logging.DEBUG)
    yield
    while logfunnel.attached() is not None:
        logfunnel.detach()
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture(autouse=True)
def _restore_named_loggers() -> Iterator[None]:
    """Put every named logger (handlers, level, propagate, disabled) back after each test.

    A handler left on a named logger, a test's own or pytest's capture
    handlers (pytest adds them to a logger that does not propagate), would
    become a route of the next funnel and turn its line mode off: later tests
    would test something else.
    """
    before = {
        name: (logger.handlers[:], logger.level, logger.propagate, logger.disabled)
        for name, logger in _named_loggers()
    }
    yield
    for name, logger in _named_loggers():
        handlers, level, propagate, disabled = before.get(name, ([], logging.NOTSET, True, False))
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled


def _named_loggers() -> list[tuple[str, logging.Logger]]:
    return [
        (name, logger)
        for name, logger in list(logging.Logger.manager.loggerDict.items())
        if isinstance(logger, logging.Logger)
    ]


def pytest_configure(config: pytest.Config) -> None:
    # Spawned children re-import test helpers by module name; make sure the
    # tests folder is importable in them whatever pytest's import mode is.
    tests_dir = str(__import__("pathlib").Path(__file__).parent)
    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
    # The repository root too, right after it: the benchmark is the package
    # bench/ there, not part of logfunnel, and its spawned workers import it.
    root = str(__import__("pathlib").Path(__file__).parent.parent)
    if root not in sys.path:
        sys.path.insert(sys.path.index(tests_dir) + 1, root)


@pytest.fixture
def serves() -> Iterator[list[Any]]:
    """``logfunnel serve`` processes a test started (``test_serve.Serve``); any still
    running at its end is killed."""
    started: list[Any] = []
    yield started
    for serve in started:
        if serve.proc.poll() is None:
            serve.kill()
