#!/usr/bin/env bash
# The test command (README): installs what is missing, starts a throwaway PostgreSQL for the
# Postgres suites, and runs the whole test suite with pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
if [ -z "${PIKKU_TEST_POSTGRES_DSN:-}" ]; then
  if pg_env="$(bash scripts/postgres.sh)"; then
    eval "$pg_env"
  elif [ -n "${CI:-}" ]; then
    echo "test.sh: could not start PostgreSQL (see above); CI runs the Postgres suites" >&2
    exit 1
  else
    echo "test.sh: could not start PostgreSQL: the Postgres tests will be skipped" >&2
  fi
fi
export PIKKU_TEST_POSTGRES_DSN="${PIKKU_TEST_POSTGRES_DSN:-}"
python3 -m pytest -p no:cacheprovider "$@"
