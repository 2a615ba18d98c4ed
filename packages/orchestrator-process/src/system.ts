import { execFile, spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { readFile } from 'node:fs/promises'
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
  file: string, args: string[], options: { runAs: RunAs | undefined, cwd: string, onLine: (line: string) => void, signal?: AbortSignal }
): Promise<void> {
  options.signal?.throwIfAborted()
  const child = spawn(file, args, {
    cwd: options.cwd, ...options.runAs, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8' }
  })
  const tail: string[] = []
  const take = (line: string): void => {
    if (line.trim() === '') return
    tail.push(line)
    if (tail.length > 5) tail.shift()
    options.onLine(line)
  }
  // SIGTERM lets pgBackRest stop cleanly (it releases its lock; the next backup cleans up what it left).
  const abort = (): void => { child.kill('SIGTERM') }
  options.signal?.addEventListener('abort', abort, { once: true })
  createInterface({ input: child.stdout }).on('line', take)
  createInterface({ input: child.stderr }).on('line', take)
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', resolve)
  }).finally(() => { options.signal?.removeEventListener('abort', abort) })
  if (options.signal?.aborted === true) throw new Error('canceled')
  if (code !== 0) throw new Error(`${file.split('/').pop() ?? file} ${args.at(-1) ?? ''} exited with ${String(code)}: ${tail.join(' | ')}`)
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
