#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine (idempotent, quiet when done).
set -euo pipefail
cd "$(dirname "$0")/.."
# The web console's browser test (tests/test_console_browser.py) drives Debian's chromium
# through chromium-driver: install both when missing (as root only; quiet).
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
  else
    echo "install.sh: chromium and chromium-driver are missing (the console's browser test" \
      "needs them): apt-get install chromium chromium-driver" >&2
  fi
fi
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
