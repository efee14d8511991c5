#!/usr/bin/env bash
# The reliability suite alone: network, archive and cluster faults, fuzzed bad input, secret scans
# (vitest's `reliability` project). Each test appends its counts to a ledger; this prints their sum
# as the closing line:
#   faults injected: N, survived: N, inputs tried: N, leaks: 0
# and fails unless every fault was survived and nothing leaked. `npm test` runs it too, beside the
# main suite. Assumes scripts/setup.sh ran: tests spawn bin/run.js, built here if missing.
# KPI_RELIABILITY_SCALE=10 multiplies the fuzzing counts of the bounded default run.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .run/reliability
export KPI_RELIABILITY_LEDGER="$PWD/.run/reliability/ledger.jsonl"
rm -f "$KPI_RELIABILITY_LEDGER"
[ -f dist/kpi.cjs ] || npm run --silent build || exit $?
npx vitest run --project reliability "$@"
code=$?
node scripts/reliability-summary.cjs
sum=$?
[ $code -ne 0 ] && exit $code
exit $sum
