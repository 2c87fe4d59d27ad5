"""``pikku-worker``: placeholder until the scale-out work lands (issue 6)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("pikku-worker: not implemented yet", file=sys.stderr)
    return 2
