#!/usr/bin/env bash
# The reliability suite: network, archive and cluster faults, fuzzed bad input, secret scans.
# Each test appends its counts to a ledger; this prints their sum as the closing line:
#   faults injected: N, survived: N, inputs tried: N, leaks: 0
# and fails unless every fault was survived and nothing leaked. Assumes `npm test` (or
# scripts/setup.sh and npm run build) ran first: tests spawn bin/run.js.
# KPI_RELIABILITY_SCALE=10 multiplies the fuzzing counts of the bounded default run.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .run/reliability
export KPI_RELIABILITY_LEDGER="$PWD/.run/reliability/ledger.jsonl"
rm -f "$KPI_RELIABILITY_LEDGER"
[ -f dist/commands/relocate.js ] || npm run --silent build || exit $?
npx vitest run --config vitest.reliability.config.ts "$@"
code=$?
node -e '
  const fs = require("fs")
  const t = {faults: 0, survived: 0, inputs: 0, leaks: 0}
  let scans = 0
  let text = ""
  try { text = fs.readFileSync(process.env.KPI_RELIABILITY_LEDGER, "utf8") } catch {}
  for (const line of text.split("\n")) {
    if (!line) continue
    const e = JSON.parse(line)
    for (const k of Object.keys(t)) t[k] += e[k] ?? 0
    if (e.leaks !== undefined) scans++
  }
  // "leaks: 0" means something only if a secret scan finished
  if (scans === 0) console.log("no secret scan finished: the leak count below means nothing")
  console.log(`faults injected: ${t.faults}, survived: ${t.survived}, inputs tried: ${t.inputs}, leaks: ${t.leaks}`)
  process.exit(t.survived === t.faults && t.leaks === 0 && scans > 0 ? 0 : 1)
'
sum=$?
[ $code -ne 0 ] && exit $code
exit $sum
