// Sums the reliability ledger (one JSON line per test: faults, survived, inputs, leaks) into the
// suite's closing line, and fails unless every fault was survived and nothing leaked.
const fs = require('fs')
const t = {faults: 0, survived: 0, inputs: 0, leaks: 0}
let scans = 0
let text = ''
try { text = fs.readFileSync(process.env.KPI_RELIABILITY_LEDGER, 'utf8') } catch {}
for (const line of text.split('\n')) {
  if (!line) continue
  const e = JSON.parse(line)
  for (const k of Object.keys(t)) t[k] += e[k] ?? 0
  if (e.leaks !== undefined) scans++
}
// "leaks: 0" means something only if a secret scan finished
if (scans === 0) console.log('no secret scan finished: the leak count below means nothing')
console.log(`faults injected: ${t.faults}, survived: ${t.survived}, inputs tried: ${t.inputs}, leaks: ${t.leaks}`)
process.exit(t.survived === t.faults && t.leaks === 0 && scans > 0 ? 0 : 1)
