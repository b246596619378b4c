"""``python -m bench.ws``: see :mod:`bench.ws.run`."""

from .run import main

raise SystemExit(main())
