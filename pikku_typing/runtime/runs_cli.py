"""``pikku-runs``: placeholder until the run inspector lands (issue 7)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("pikku-runs: not implemented yet", file=sys.stderr)
    return 2
