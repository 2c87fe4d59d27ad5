#!/usr/bin/env bash
# The test command of the README: runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pytest -q -p no:cacheprovider "$@"
