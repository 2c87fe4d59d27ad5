"""``pikku-analyze``: placeholder until the analyzer lands (issue 3)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("pikku-analyze: not implemented yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
