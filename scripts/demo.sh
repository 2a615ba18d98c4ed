#!/usr/bin/env bash
# The README's main command: installs what pgmesh needs on a fresh Debian 12 machine (PostgreSQL, pglogical,
# Node packages), builds, and runs a local three-host cluster on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
npm ci --no-audit --no-fund --loglevel=error
npm run build --silent
exec node_modules/.bin/tsx scripts/demo.ts
