// Prints vitest's JSON report as one closing line CI can read, and fails when no test ran.
import { readFileSync } from 'node:fs'

const file = process.argv[2] ?? 'test-results/vitest.json'
let report
try {
  report = JSON.parse(readFileSync(file, 'utf8'))
} catch (err) {
  console.log(`tests: 0 passed, 0 failed (no report at ${file}: ${err.message})`)
  process.exit(1)
}
const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0)
console.log(`tests: ${report.numPassedTests} passed, ${report.numFailedTests} failed, ${skipped} skipped`)
process.exit(report.numTotalTests > 0 && report.numFailedTests === 0 ? 0 : 1)
