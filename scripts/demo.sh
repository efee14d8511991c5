#!/usr/bin/env bash
# The main job on the embedded default: sandbox, sample bundle across the air gap, install, status.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run --silent build
exec node bin/run.js demo --dir "${KPI_DEMO_DIR:-.run/demo}"
