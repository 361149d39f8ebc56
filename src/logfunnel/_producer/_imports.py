"""Run a function once a module has been imported, without importing it first.

The startup hook adjusts ``logging.config`` and ``multiprocessing.process``
for an attached process, but importing either up front would cost every
process that never uses them (``logging.config`` alone pulls in
``socketserver``). A finder at the front of ``sys.meta_path`` waits for the
import instead: it asks the other finders for the module's spec, and wraps
the loader so that the callback runs right after the module's code has.
Every other import costs one dictionary lookup.
"""

from __future__ import annotations

import sys

# typing is for the type checker only: attached processes import this module at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any

__all__ = ["when_imported"]


def when_imported(name: str, callback: Callable[[ModuleType], None]) -> None:
    """Call ``callback(module)`` once ``name`` is imported: now, if it already is."""
    module = sys.modules.get(name)
    if module is not None:
        callback(module)
        return
    _watcher().callbacks.setdefault(name, []).append(callback)


class _Watcher:
    """The finder: it finds nothing itself, it only wraps the loaders of watched names."""

    def __init__(self) -> None:
        self.callbacks: dict[str, list[Callable[[ModuleType], None]]] = {}

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        callbacks = self.callbacks.get(name)
        if callbacks is None:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec: ModuleSpec | None = find(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        del self.callbacks[name]
        spec.loader = _Loader(spec.loader, callbacks)  # type: ignore[assignment]
        return spec


class _Loader:
    """The module's own loader, plus the callbacks after ``exec_module``.

    Everything else (``get_source`` for tracebacks, resource readers) is the
    real loader's, since the module keeps this object as its ``__loader__``.
    """

    def __init__(self, loader: Any, callbacks: list[Callable[[ModuleType], None]]) -> None:
        self._loader = loader
        self._callbacks = callbacks

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        create = getattr(self._loader, "create_module", None)
        return None if create is None else create(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        for callback in self._callbacks:
            callback(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


_the_watcher: _Watcher | None = None


def _watcher() -> _Watcher:
    global _the_watcher
    if _the_watcher is None or _the_watcher not in sys.meta_path:
        _the_watcher = _Watcher()
        sys.meta_path.insert(0, _the_watcher)
    return _the_watcher
