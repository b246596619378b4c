"""``python -m gamews [OPTIONS]``: the same service as ``twistd -n gamews [OPTIONS]``, in the
foreground, for people who do not know twistd (``python -m gamews --help`` lists the options).

``python -m gamews check-config FILE`` checks a config file as a start would, without
starting: one line, exit status 0 (valid) or 2 (the first bad setting, named).
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Run ``twistd -n --pidfile= gamews ARGV`` in this process (never returns normally)."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["check-config"]:
        if len(args) != 2:
            sys.stderr.write("usage: python -m gamews check-config FILE\n")
            raise SystemExit(2)
        from gamews.reload import check_config

        raise SystemExit(check_config(args[1]))
    from twisted.scripts.twistd import run

    sys.argv = ["python -m gamews", "--nodaemon", "--pidfile=", "gamews", *args]
    run()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
