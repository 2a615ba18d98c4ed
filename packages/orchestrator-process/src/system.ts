import { execFile, spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { promisify } from 'node:util'

const execFileAsync = promisify(execFile)

/** Who runs the Postgres binaries: postgres refuses to run as root, so root hands them to the `postgres` OS user. */
export interface RunAs { uid: number, gid: number }

/** undefined when this process is not root (then Postgres runs as this process's own user). */
export async function postgresOsUser (): Promise<RunAs | undefined> {
  if (process.getuid?.() !== 0) return undefined
  // `id` goes through NSS, so it also finds users that are not in /etc/passwd.
  const [uid, gid] = await Promise.all([
    execFileAsync('id', ['-u', 'postgres']),
    execFileAsync('id', ['-g', 'postgres'])
  ]).catch((err: unknown) => {
    throw new Error('running as root needs a `postgres` OS user to run PostgreSQL as', { cause: err })
  })
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) }
}

class CommandError extends Error {
  override readonly name = 'CommandError'
  constructor (readonly command: string, readonly stderr: string, options: { cause: unknown }) {
    super(`${command} failed: ${stderr.trim() === '' ? String(options.cause) : stderr.trim()}`, options)
  }
}

/** Runs a binary to completion (as the postgres OS user when root), with a clean, predictable environment. */
export async function runCommand (
  file: string, args: string[], options: { runAs: RunAs | undefined, cwd: string, env?: Record<string, string> }
): Promise<string> {
  try {
    const { stdout } = await execFileAsync(file, args, {
      cwd: options.cwd,
      ...options.runAs,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8', ...options.env },
      maxBuffer: 16 * 1024 * 1024
    })
    return stdout
  } catch (err) {
    const stderr = (err as { stderr?: unknown }).stderr
    throw new CommandError(`${file.split('/').pop() ?? file} ${args[0] ?? ''}`.trim(), typeof stderr === 'string' ? stderr : '', { cause: err })
  }
}

/**
 * Runs a binary to completion like runCommand, handing every line it prints (stdout and stderr) to `onLine` as it
 * comes; fails with its last lines.
 */
export async function streamCommand (
  file: string, args: string[], options: { runAs: RunAs | undefined, cwd: string, onLine: (line: string) => void, signal?: AbortSignal, pidFile?: string }
): Promise<void> {
  options.signal?.throwIfAborted()
  // With a pid file: a process group of its own (pgBackRest forks workers), recorded so that, should this daemon die
  // before it, the next run finds and stops it (stopLeftover) instead of failing on the lock it still holds.
  const detached = options.pidFile !== undefined
  const child = spawn(file, args, {
    cwd: options.cwd, ...options.runAs, detached, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8' }
  })
  if (options.pidFile !== undefined && child.pid !== undefined) await writeFile(options.pidFile, `${child.pid}\n`, { mode: 0o600 })
  const tail: string[] = []
  const take = (line: string): void => {
    if (line.trim() === '') return
    tail.push(line)
    if (tail.length > 5) tail.shift()
    options.onLine(line)
  }
  // SIGTERM lets pgBackRest stop cleanly (it releases its lock; the next backup cleans up what it left).
  const abort = (): void => {
    try {
      if (detached && child.pid !== undefined) process.kill(-child.pid, 'SIGTERM')
      else child.kill('SIGTERM')
    } catch { /* gone already */ }
  }
  options.signal?.addEventListener('abort', abort, { once: true })
  createInterface({ input: child.stdout }).on('line', take)
  createInterface({ input: child.stderr }).on('line', take)
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', resolve)
  }).finally(() => { options.signal?.removeEventListener('abort', abort) })
  if (options.pidFile !== undefined) await rm(options.pidFile, { force: true })
  if (options.signal?.aborted === true) throw new Error('canceled')
  if (code !== 0) throw new Error(`${file.split('/').pop() ?? file} ${args.at(-1) ?? ''} exited with ${String(code)}: ${tail.join(' | ')}`)
}

/**
 * Stops what a streamCommand with this pid file started and left running when its daemon died (SIGKILL, a crash):
 * its whole process group, SIGTERM then, after `graceMs`, SIGKILL. Only when the pid still runs a command whose
 * arguments hold `marker` (a pid reused by another process is left alone). Answers the pid it stopped.
 */
export async function stopLeftover (pidFile: string, marker: string, graceMs = 10_000): Promise<number | undefined> {
  const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim())
  if (!Number.isInteger(pid) || pid <= 1) return undefined
  const args = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
  if (!args.includes(marker) || !await isProcessAlive(pid)) {
    await rm(pidFile, { force: true })
    return undefined
  }
  const signalGroup = (signal: NodeJS.Signals): void => { try { process.kill(-pid, signal) } catch { /* gone */ } }
  signalGroup('SIGTERM')
  const deadline = Date.now() + graceMs
  while (await isProcessAlive(pid) && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 100))
  // The group's workers too, whether or not the leader went on SIGTERM.
  signalGroup('SIGKILL')
  while (await isProcessAlive(pid)) await new Promise(resolve => setTimeout(resolve, 50))
  await rm(pidFile, { force: true })
  return pid
}

/**
 * True while the process exists and is not a zombie. Postgres started by pg_ctl is reparented to pid 1, and some
 * container inits never reap, so a killed postmaster can linger as a zombie that `kill(pid, 0)` still reports.
 */
export async function isProcessAlive (pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    // Format: `pid (comm) state …`; comm may contain spaces or parentheses, so read after the last `)`.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
    return state !== 'Z' && state !== 'X'
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    // No procfs: fall back to the signal probe.
    try {
      process.kill(pid, 0)
      return true
    } catch (probeErr) {
      return (probeErr as NodeJS.ErrnoException).code === 'EPERM'
    }
  }
}
