import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const SCRIPT = resolve(import.meta.dirname, 'test-summary.mjs')
let dir: string

beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'pgmesh-test-summary-')) })
afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

type Status = 'passed' | 'failed' | 'skipped'
interface FileResult { name: string, status: 'passed' | 'failed', message: string, assertionResults: Array<{ title: string, status: Status }> }

/** A vitest JSON report (the fields it has, trimmed to the ones that matter) with top-level counts as vitest makes them. */
function report (files: FileResult[]): unknown {
  const all = files.flatMap(f => f.assertionResults)
  const count = (status: Status): number => all.filter(a => a.status === status).length
  const failedFiles = files.filter(f => f.status === 'failed').length
  return {
    numTotalTestSuites: files.length, numPassedTestSuites: files.length - failedFiles, numFailedTestSuites: failedFiles, numPendingTestSuites: 0,
    numTotalTests: all.length, numPassedTests: count('passed'), numFailedTests: count('failed'), numPendingTests: count('skipped'), numTodoTests: 0,
    success: failedFiles === 0, testResults: files
  }
}

const passing: FileResult = { name: '/repo/ok.test.ts', status: 'passed', message: '', assertionResults: [{ title: 'passes', status: 'passed' }, { title: 'later', status: 'skipped' }] }
const failedHook: FileResult = {
  name: '/repo/test/swarm.test.ts', status: 'failed', message: 'testbed did not come up\n    at beforeAll',
  assertionResults: [{ title: 'a', status: 'skipped' }, { title: 'b', status: 'skipped' }]
}
const importError: FileResult = { name: '/repo/import.test.ts', status: 'failed', message: "Cannot find module './missing.js'", assertionResults: [] }
const failedTest: FileResult = { name: '/repo/fail.test.ts', status: 'failed', message: '', assertionResults: [{ title: 'fails', status: 'failed' }] }
const failedAfterAll: FileResult = { name: '/repo/leftovers.test.ts', status: 'failed', message: 'expected leftovers to be empty', assertionResults: [{ title: 'runs', status: 'passed' }] }

/** Runs the script from / (it prints file names relative to the working directory). */
async function run (reportFile: string): Promise<{ lines: string[], code: number }> {
  try {
    const { stdout } = await promisify(execFile)(process.execPath, [SCRIPT, reportFile], { cwd: '/' })
    return { lines: stdout.trim().split('\n'), code: 0 }
  } catch (err) {
    const e = err as { stdout: string, code: number }
    return { lines: e.stdout.trim().split('\n'), code: e.code }
  }
}

async function summarize (files: FileResult[]): Promise<{ lines: string[], code: number }> {
  const file = join(dir, `report-${Math.random().toString(36).slice(2)}.json`)
  await writeFile(file, JSON.stringify(report(files)))
  return await run(file)
}

describe('test-summary.mjs', () => {
  it('counts a file that failed before its tests ran (beforeAll, import) as one failure each, not as skipped tests', async () => {
    const { lines, code } = await summarize([passing, failedHook, importError])
    expect(lines.at(-1)).toBe('tests: 1 passed, 2 failed, 1 skipped')
    expect(lines).toContain('failed before its tests ran (2 not run): repo/test/swarm.test.ts: testbed did not come up')
    expect(lines).toContain("failed before its tests ran: repo/import.test.ts: Cannot find module './missing.js'")
    expect(code).toBe(1)
  })

  it('counts a file that failed after its tests passed (afterAll) as a failure', async () => {
    const { lines, code } = await summarize([passing, failedAfterAll])
    expect(lines).toEqual(['failed outside its tests: repo/leftovers.test.ts: expected leftovers to be empty', 'tests: 2 passed, 1 failed, 1 skipped'])
    expect(code).toBe(1)
  })

  it('counts failed tests once, without a line for their file', async () => {
    const { lines, code } = await summarize([passing, failedTest])
    expect(lines).toEqual(['tests: 1 passed, 1 failed, 1 skipped'])
    expect(code).toBe(1)
  })

  it('exits 0 only when something passed and nothing failed', async () => {
    expect(await summarize([passing])).toEqual({ lines: ['tests: 1 passed, 0 failed, 1 skipped'], code: 0 })
    expect((await summarize([])).code).toBe(1)
  })

  it('fails without a report', async () => {
    const { lines, code } = await run(join(dir, 'missing.json'))
    expect(lines[0]).toMatch(/^tests: 0 passed, 0 failed \(no report at .*missing\.json/)
    expect(code).toBe(1)
  })
})
