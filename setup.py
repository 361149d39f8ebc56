"""Everything is in pyproject.toml, but for the startup hook's ``.pth`` file.

A ``.pth`` file works only at the top of site-packages, outside any package,
so the build copies ``src/logfunnel-startup.pth`` next to the package in the
wheel. (setuptools' editable installs leave it out; logfunnel then uses the
``sitecustomize`` in ``logfunnel/_bootstrap`` instead.)
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "logfunnel-startup.pth"


class BuildWithStartupHook(build_py):
    def run(self) -> None:
        super().run()
        source = Path(__file__).parent / "src" / PTH
        self.copy_file(str(source), str(Path(self.build_lib) / PTH))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / PTH)]


setup(cmdclass={"build_py": BuildWithStartupHook})
