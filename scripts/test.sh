#!/usr/bin/env bash
# Runs every test on a fresh Debian 12 machine: system packages, npm ci, build, typecheck, vitest.
# Prints a closing "tests: N passed, N failed, N skipped" line.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
npm ci --no-audit --no-fund --loglevel=error
rm -rf test-results
status=0
npm test || status=$?
node scripts/test-summary.mjs test-results/vitest.json || status=1
exit "$status"
