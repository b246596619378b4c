"""``python -m gamews [OPTIONS]``: the same service as ``twistd -n gamews [OPTIONS]``, in the
foreground, for people who do not know twistd (``python -m gamews --help`` lists the options).
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Run ``twistd -n --pidfile= gamews ARGV`` in this process (never returns normally)."""
    args = sys.argv[1:] if argv is None else argv
    from twisted.scripts.twistd import run

    sys.argv = ["python -m gamews", "--nodaemon", "--pidfile=", "gamews", *args]
    run()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
