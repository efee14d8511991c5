#!/usr/bin/env bash
# Runs every test: installs what the tests need (apt packages, Go-built tools), builds, then vitest
# against real registries and a real control plane that the tests start on loopback. With no
# arguments both projects run over the same workers (main, and reliability: faults, fuzzed input,
# secret scans), and two closing lines follow: the test counts, then the reliability summary.
# Arguments go to vitest (files, -t PATTERN, --project NAME).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit $?
npm run --silent build || exit $?
mkdir -p .run/reliability
# Every temporary directory of the run (the tests' registries, archives and clusters, kpi's own)
# goes under one directory per checkout, emptied when the next run starts: a run leaves about
# 1.2 GiB behind for a failure to be looked into, and no longer 1.2 GiB more per run in /tmp.
export TMPDIR="${TMPDIR:-/tmp}/kpi-tests-$(printf %s "$PWD" | cksum | cut -d' ' -f1)"
rm -rf "$TMPDIR" && mkdir -p "$TMPDIR" || exit $?
export KPI_RELIABILITY_LEDGER="$PWD/.run/reliability/ledger.jsonl"
rm -f "$KPI_RELIABILITY_LEDGER"
npx vitest run --reporter=default --reporter=json --outputFile.json=.run/vitest.json "$@"
code=$?
# the plain closing line: N passed, N failed (, N skipped)
node -e '
  const r = JSON.parse(require("fs").readFileSync(".run/vitest.json", "utf8"))
  const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0)
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`)
' 2>/dev/null || echo "tests: 0 passed, 1 failed"
if [ $# -eq 0 ]; then
  node scripts/reliability-summary.cjs
  rel=$?
  [ $code -eq 0 ] && code=$rel
fi
exit $code
