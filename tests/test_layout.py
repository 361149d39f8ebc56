"""The package's shape: a record's way reads top to bottom.

A record goes producer -> protocol -> collector -> sinks. No module may import
one of a layer the record has already left (the producer never imports
collector code, the protocol imports no layer at all), and the file strategies
share nothing with the collector's path. (What workers import: test_api.py.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import logfunnel

SRC = Path(logfunnel.__file__).parent

#: Which of the package's parts each part may import (besides itself and the leaf _threads).
ALLOWED = {
    "_protocol": set(),
    "_producer": {"_protocol", "_json"},
    # An OTLP sink among the shortcut sinks is built by the integration.
    "_sinks": {"_protocol", "_files", "_json", "otel"},
    "_collector": {"_protocol", "_sinks"},
    "_files": set(),
    # The JSON lines formatter: producers format with it, sinks recognise it.
    "_json": {"_protocol"},
    # Reading a log back (demo, benchmark, tests): a leaf, and no worker's.
    "_audit": set(),
    # The sink options of run and serve are SinkConfig's fields, from its one description.
    "_cli": {"_audit", "_files", "_funnel", "_sinks"},
    "_threads": set(),
    # What a running funnel exports for its children, and where they pick it up.
    "_inherit": {"_producer", "_protocol"},
    "_bootstrap": {"_producer"},
    # Integrations (an optional extra each): a sink reads what the producer sent.
    "otel": {"_producer", "_protocol", "_sinks"},
    # Integrations: they run in workers, so they attach as any producer does.
    "dask": {"_producer", "_protocol"},
}


def _part(module: str) -> str:
    """``logfunnel._collector._loop`` -> ``_collector``; ``logfunnel._funnel`` -> ``_funnel``."""
    return module.split(".")[1] if module.count(".") else ""


def _imports(path: Path) -> set[str]:
    """The logfunnel modules ``path`` imports, anywhere in it (also inside functions)."""
    module = "logfunnel." + ".".join(path.relative_to(SRC).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    package = package.removesuffix(".__init__")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.startswith("logfunnel"):
                found.add(target)
                found |= {f"{target}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("logfunnel")}
    return found


class TestLayers:
    @pytest.mark.parametrize("part", sorted(ALLOWED))
    def test_no_import_points_back_up(self, part: str) -> None:
        """Each part imports only the parts below it on a record's way."""
        files = [SRC / f"{part}.py"] if (SRC / f"{part}.py").exists() else []
        files += sorted((SRC / part).rglob("*.py")) if (SRC / part).is_dir() else []
        assert files
        wrong = []
        for path in files:
            for target in _imports(path):
                other = _part(target)
                outside = other not in {*ALLOWED, "_funnel", "_sigterm"}
                if outside or other in ("", part, "_threads"):
                    continue
                if other not in ALLOWED[part]:
                    wrong.append(f"{path.relative_to(SRC)} imports {target}")
        assert wrong == []

    def test_every_module_is_in_a_known_part(self) -> None:
        """No module sits outside the layers this test knows (a new one must be placed)."""
        top = {p.stem for p in SRC.glob("*.py")} | {p.name for p in SRC.iterdir() if p.is_dir()}
        known = {*ALLOWED, "__init__", "__main__", "_funnel", "_sigterm", "__pycache__"}
        assert top - known == set()
