"""Which threads of this process are collectors.

A sink that logs from inside the collector thread must not write to the
process's own socket: the collector is the one that would have to read it.
The collector registers its thread here, and the producer's handler checks
this (one dict lookup, and none while it is empty, as in every worker).
Both sides import this leaf, so neither imports the other.
"""

from __future__ import annotations

import os

# typing is for the type checker only: every worker imports this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


__all__ = ["collector_threads"]

#: The collector running in each collector thread, by thread id.
collector_threads: dict[int, Any] = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=collector_threads.clear)
