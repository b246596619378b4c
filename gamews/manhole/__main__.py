"""``python -m gamews.manhole hash-password USER``."""

from gamews.manhole.credentials import main

raise SystemExit(main())
