#!/usr/bin/env bash
# Runs every test: installs what the tests need (apt packages, Go-built tools), builds, then vitest
# against real registries and a real control plane that the tests start on loopback.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit $?
npm run --silent build || exit $?
mkdir -p .run
npx vitest run --reporter=default --reporter=json --outputFile.json=.run/vitest.json "$@"
code=$?
# the plain closing line: N passed, N failed (, N skipped)
node -e '
  const r = JSON.parse(require("fs").readFileSync(".run/vitest.json", "utf8"))
  const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0)
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`)
' 2>/dev/null || echo "tests: 0 passed, 1 failed"
# with no arguments, every test: the reliability suite too (faults, fuzzed input, secret scans)
if [ $# -eq 0 ]; then
  bash scripts/reliability.sh
  rel=$?
  [ $code -eq 0 ] && code=$rel
fi
exit $code
