"""``python -m logfunnel``: the same commands as the ``logfunnel`` script."""

from ._cli import main

raise SystemExit(main())
