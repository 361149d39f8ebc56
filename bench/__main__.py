"""``python -m bench``, from the root of a clone: see bench/README.md."""

from __future__ import annotations

import sys

from . import main

# Spawned workers import this package again; only the command itself runs the bench.
if __name__ == "__main__":
    sys.exit(main())
