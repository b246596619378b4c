"""Summarise a py-spy ``--format raw`` profile: self and inclusive time per function."""

from __future__ import annotations

import sys
from collections import Counter


def frame_key(frame: str) -> str:
    name, _, where = frame.partition(" (")
    return f"{name} ({where.split(':')[0].split('/')[-1]})"


def main(path: str, top: int = 25) -> None:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            n = int(count)
            total += n
            frames = [frame_key(x) for x in stack.split(";")]
            own[frames[-1]] += n
            for key in set(frames):
                inclusive[key] += n
    print(f"{total} samples")
    print("-- self time")
    for key, n in own.most_common(top):
        print(f"{100 * n / total:5.1f}% {key}")
    print("-- inclusive time")
    for key, n in inclusive.most_common(top * 2):
        print(f"{100 * n / total:5.1f}% {key}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25)
