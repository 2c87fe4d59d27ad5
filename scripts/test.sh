#!/usr/bin/env bash
# The test command (README): installs what is missing, starts a throwaway PostgreSQL for the
# Postgres suites, and runs the whole test suite with pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
if [ -z "${PIKKU_TEST_POSTGRES_DSN:-}" ] && [ -f scripts/postgres.sh ]; then
  eval "$(bash scripts/postgres.sh)"
fi
export PIKKU_TEST_POSTGRES_DSN="${PIKKU_TEST_POSTGRES_DSN:-}"
python3 -m pytest -p no:cacheprovider "$@"
