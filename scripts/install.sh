#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine (idempotent, quiet when done).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import pikku_typing, pytest, pytest_mypy_plugins, procrastinate" >/dev/null 2>&1 \
   || [ pyproject.toml -nt .pikku/.installed ]; then
  # editable_mode=compat: a plain .pth path entry, which mypy and pyright follow (the default
  # import-hook editable install is invisible to type checkers).
  python3 -m pip install --quiet --disable-pip-version-check -e '.[dev]' \
    --config-settings editable_mode=compat
  mkdir -p .pikku && touch .pikku/.installed
fi
# pyright (from PyPI) fetches its node package on first use: do it now, not inside a test.
pyright --version >/dev/null
