"""The public surface: what `import logfunnel` offers, and what it costs every worker."""

from __future__ import annotations

import logging
import subprocess
import sys
import types

import pytest

import logfunnel


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
        assert {m.split(".")[1] for m in ours} <= {"_producer", "_protocol", "_threads"}
        costly = {
            "asyncio",
            "argparse",
            "concurrent.futures",
            "multiprocessing.pool",
            "pickletools",
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
        # Submodules imported by name (``import logfunnel.dask``) are not names of the package.
        public = {
            n
            for n in dir(logfunnel)
            if not n.startswith("_") and not isinstance(getattr(logfunnel, n), types.ModuleType)
        }
        assert public <= set(logfunnel.__all__)


class TestTheHotPath:
    @pytest.mark.parametrize("listen", [None, "tcp://127.0.0.1:0"], ids=["unix", "tcp"])
    def test_a_handler_keeps_few_enough_attributes_for_cpythons_fast_access(
        self, listen: str | None
    ) -> None:
        """A connected ``FunnelHandler`` has at most 29 instance attributes (Handler's
        included). With 30 or more, CPython 3.11 gives up the shared-key layout of its
        instance dictionary, and every attribute read and method call of ``emit`` falls
        back to a dictionary lookup: about 3% more instructions a record."""
        with logfunnel.Funnel(listen=listen, inherit=False) as funnel:
            handler = logfunnel.FunnelHandler(funnel.address)
            handler.handle(logging.makeLogRecord({"msg": "connected"}))
            assert handler.config, "the handler did not connect"
            assert len(vars(handler)) <= 29, sorted(vars(handler))
            handler.close()


class TestVersion:
    def test_version_is_the_installed_distribution(self) -> None:
        """__version__ comes from the package metadata."""
        from importlib.metadata import version

        assert logfunnel.__version__ == version("logfunnel")
