import { type ChildProcess, spawn } from 'node:child_process'
import { resolve } from 'node:path'

const MAIN = resolve(import.meta.dirname, '../../cmd/pgmesh/bin/pgmesh.mjs')

export interface CliResult { code: number | null, stdout: string, stderr: string }

export interface CliOptions {
  /** More environment; PGMESH_SERVER and XDG_CONFIG_HOME from the test's environment never leak in. */
  env?: Record<string, string | undefined>
  input?: string
  timeoutMs?: number
}

/** The CLI as its user runs it: `node cmd/pgmesh/bin/pgmesh.mjs ARGS`, a child process with piped output. */
/** Starts the CLI; `stdout()` is what it printed so far. */
export function startCli (args: readonly string[], options: CliOptions = {}): { child: ChildProcess, done: Promise<CliResult>, stdout: () => string } {
  const env: Record<string, string | undefined> = { ...process.env, PGMESH_SERVER: undefined, XDG_CONFIG_HOME: '/nonexistent', NO_COLOR: undefined, FORCE_COLOR: undefined, ...options.env }
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k]
  const child = spawn(process.execPath, [MAIN, ...args], { env: env as NodeJS.ProcessEnv, stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  child.stdin?.end(options.input ?? '')
  const timer = setTimeout(() => { child.kill('SIGKILL') }, options.timeoutMs ?? 60_000)
  const done = new Promise<CliResult>(res => {
    child.once('close', (code) => {
      clearTimeout(timer)
      res({ code, stdout, stderr })
    })
  })
  return { child, done, stdout: () => stdout }
}

export async function cli (args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  return await startCli(args, options).done
}

/** Runs the CLI, expects exit 0, and returns stdout parsed as JSON (for `-o json`). */
export async function cliJson<T = any> (args: readonly string[], options: CliOptions = {}): Promise<T> {
  const res = await cli([...args, '-o', 'json'], options)
  if (res.code !== 0) throw new Error(`pgmesh ${args.join(' ')} exited ${String(res.code)}: ${res.stderr}${res.stdout}`)
  return JSON.parse(res.stdout) as T
}

/** Output with what changes between runs replaced: ports, times, task ids, instance id suffixes stay. */
export function stable (text: string): string {
  return text
    .replace(/127\.0\.0\.1:\d{4,5}/g, m => `127.0.0.1:${'P'.repeat(m.length - 10)}`)
    .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ/g, 'YYYY-MM-DDTHH:MM:SSZ')
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, 'TASK-ID-000000000000000000000000000000')
}
