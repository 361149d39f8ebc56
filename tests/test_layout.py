"""The package's shape: a record's way reads top to bottom, and workers import little.

A record goes producer -> protocol -> collector -> sinks. No module may import
one of a layer the record has already left (the producer never imports
collector code, the protocol imports no layer at all), and the file strategies
share nothing with the collector's path. Every worker imports logfunnel, so
what ``import logfunnel`` and ``attach`` pull in is listed here too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import logfunnel

SRC = Path(logfunnel.__file__).parent

#: Which of the package's parts each part may import (besides itself and the leaf _threads).
ALLOWED = {
    "_protocol": set(),
    "_producer": {"_protocol"},
    "_sinks": {"_protocol", "_files"},
    "_collector": {"_protocol", "_sinks"},
    "_files": set(),
    "_cli": {"_files", "_funnel"},
    "_threads": set(),
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


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


class TestWhatWorkersImport:
    def test_attach_pulls_in_only_the_producer(self) -> None:
        """``import logfunnel`` plus ``attach`` and ``FunnelHandler`` load no collector, sink,
        file or CLI code, and none of the costly modules a worker does not need yet."""
        loaded = _modules_after("import logfunnel\nfrom logfunnel import attach, FunnelHandler")
        ours = {m for m in loaded if m.startswith("logfunnel.")}
        assert {_part(m) for m in ours} <= {"_producer", "_protocol", "_threads"}
        costly = {
            "importlib.metadata",
            "typing",
            "json",
            "socket",
            "selectors",
            "dataclasses",
            "hmac",
            "secrets",
            "ssl",
            "urllib.parse",
            "multiprocessing",
        }
        assert loaded & costly == set()

    def test_the_version_is_read_when_asked(self) -> None:
        """``__version__`` is read from the package metadata on first use, not at import."""
        assert "importlib.metadata" not in _modules_after("import logfunnel")
        loaded = _modules_after("import logfunnel\nprint(logfunnel.__version__)")
        assert "importlib.metadata" in loaded

    def test_all_lists_exactly_the_public_names(self) -> None:
        """``__all__`` names every public name, and each of them can be imported."""
        for name in logfunnel.__all__:
            assert getattr(logfunnel, name) is not None
        public = {n for n in dir(logfunnel) if not n.startswith("_")}
        assert public <= set(logfunnel.__all__)
