"""The startup hook by way of ``sitecustomize``, for interpreters without the ``.pth`` line.

Python imports the first ``sitecustomize`` it finds on ``sys.path``, so this
one must hand on to the one it hides: after attaching, it imports the next
``sitecustomize`` with this directory left out of the path, as if this one
had never been there. Errors in that one are reported by ``site`` as usual.
An interpreter that cannot import logfunnel (another Python, say) only
skips the attaching.
"""

import os
import sys


def _attach_then_hand_on() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        from logfunnel._producer._startup import start_from_environment
    except ImportError:
        pass
    else:
        start_from_environment()
    saved = sys.path[:]
    sys.path[:] = [p for p in saved if os.path.abspath(p or os.curdir) != here]
    this = sys.modules.pop("sitecustomize", None)
    try:
        import sitecustomize  # type: ignore[import-not-found]  # noqa: F401  (the user's, if any)
    except ImportError as exc:
        if exc.name != "sitecustomize":
            raise
        if this is not None:
            sys.modules["sitecustomize"] = this
    finally:
        sys.path[:] = saved


_attach_then_hand_on()
