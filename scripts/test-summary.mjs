// Prints vitest's JSON report as one closing line CI can read, `tests: N passed, N failed, N skipped`, and exits
// non-zero when anything failed or no test ran.
//
// A test file that fails outside its tests (a failed beforeAll/afterAll, an import error) has no failed test of its
// own: after a failed beforeAll its tests are reported as skipped, after an import error there are none. Each such
// file counts as one failure, its tests that never ran are not counted as skipped, and a line before the closing
// one names the file and the error.
import { readFileSync } from 'node:fs'
import { relative } from 'node:path'

const file = process.argv[2] ?? 'test-results/vitest.json'
let report
try {
  report = JSON.parse(readFileSync(file, 'utf8'))
} catch (err) {
  console.log(`tests: 0 passed, 0 failed (no report at ${file}: ${err.message})`)
  process.exit(1)
}

const passed = report.numPassedTests ?? 0
let failed = report.numFailedTests ?? 0
let skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0)
for (const result of report.testResults ?? []) {
  const statuses = (result.assertionResults ?? []).map(a => a.status)
  if (result.status !== 'failed' || statuses.includes('failed')) continue
  failed++
  const ran = statuses.some(s => s === 'passed')
  const notRun = ran ? 0 : statuses.filter(s => s === 'skipped' || s === 'pending' || s === 'todo').length
  skipped -= notRun
  const message = (result.message ?? '').split('\n')[0] || 'no message'
  const where = ran ? 'outside its tests' : `before its tests ran${notRun > 0 ? ` (${notRun} not run)` : ''}`
  console.log(`failed ${where}: ${relative(process.cwd(), result.name ?? '?')}: ${message}`)
}
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`)
const ok = failed === 0 && passed > 0 && (report.numFailedTestSuites ?? 0) === 0 && report.success !== false
process.exit(ok ? 0 : 1)
