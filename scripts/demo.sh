#!/usr/bin/env bash
# The main job (README): install, analyze the example app, regenerate its package and stubs,
# then run the onboarding workflow end to end on the embedded default store (.pikku/state).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
echo "== pikku-analyze examples"
pikku-analyze examples
echo
echo "== run the onboarding workflow"
cd examples && python3 run.py
