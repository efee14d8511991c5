#!/usr/bin/env bash
# Runs every test: installs what the tests need (apt packages, Go-built tools), builds, then vitest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx tsc -p tsconfig.json
exec npx vitest run "$@"
