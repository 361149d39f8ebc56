"""The public surface: what `import logfunnel` offers and what it costs."""

from __future__ import annotations

import subprocess
import sys

import logfunnel


class TestPublicNames:
    def test_all_lists_exactly_the_public_names(self) -> None:
        """__all__ matches the names the package exposes without a leading underscore."""
        public = {
            name
            for name in vars(logfunnel)
            if not name.startswith("_")
            and name not in {"annotations", "version", "PackageNotFoundError"}
        }
        public.add("__version__")
        assert sorted(logfunnel.__all__) == sorted(public)

    def test_version_is_the_installed_distribution(self) -> None:
        """__version__ comes from the package metadata."""
        from importlib.metadata import version

        assert logfunnel.__version__ == version("logfunnel")


class TestImportCost:
    def test_import_pulls_in_no_heavy_modules(self) -> None:
        """Every worker imports logfunnel: that must not drag in pools, asyncio or argparse."""
        code = "import sys, logfunnel; print(' '.join(sorted(sys.modules)))"
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        loaded = set(out.stdout.split())
        assert "logfunnel" in loaded
        heavy = {"asyncio", "argparse", "concurrent.futures", "multiprocessing.pool", "pickletools"}
        assert loaded & heavy == set()
