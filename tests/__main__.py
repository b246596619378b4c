"""Run the whole suite with trial and end with one plain line: ``N passed, N failed, N skipped``.

Usage: ``python -m tests [trial options] [test names]`` (default: every test).
"""

from __future__ import annotations

import re
import subprocess
import sys


def summary(output: str) -> tuple[int, int, int]:
    """(passed, failed, skipped) from trial's closing lines."""
    last = [line for line in output.splitlines() if line.startswith(("PASSED", "FAILED"))]
    counts: dict[str, int] = {}
    if last:
        for name, number in re.findall(r"(\w+)=(\d+)", last[-1]):
            counts[name] = int(number)
    passed = counts.get("successes", 0) + counts.get("expectedFailures", 0)
    failed = (counts.get("failures", 0) + counts.get("errors", 0)
              + counts.get("unexpectedSuccesses", 0))
    return passed, failed, counts.get("skips", 0)


def main(argv: list[str]) -> int:
    args = argv or ["tests"]
    process = subprocess.Popen(
        [sys.executable, "-m", "twisted.trial", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        sys.stdout.write(line)
        lines.append(line)
    code = process.wait()
    passed, failed, skipped = summary("".join(lines))
    if code != 0 and failed == 0:
        failed = 1  # trial failed without a summary (an import error, say)
    print(f"{passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return 0 if code == 0 and passed > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
