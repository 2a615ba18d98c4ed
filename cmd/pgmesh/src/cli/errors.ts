import { ApiRequestError, UnreachableError } from '@pgmesh/client'
import type { Painter } from './output.js'

/** The CLI's exit codes, distinct per kind of failure so scripts can tell them apart. */
export const EXIT = {
  ok: 0,
  /** Something unexpected (a bug, a local I/O error). */
  failure: 1,
  /** Bad command line, spec file or config file: nothing was sent. */
  usage: 2,
  /** A host answered with an error (`{name, message}`). */
  api: 3,
  /** A followed task ended failed or canceled. */
  task: 4,
  /** No server answered. */
  unreachable: 5,
  /** Ctrl-C while following a task (the task goes on). */
  interrupted: 130
} as const

/** A mistake in what the user gave (arguments, files): printed as it is, exit 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError'
}

/** Ends the command with a code, after whatever it printed itself. */
export class ExitError extends Error {
  override readonly name = 'ExitError'
  constructor (readonly code: number, message = `exit ${code}`) { super(message) }
}

/** Prints an error for a human on stderr and returns the exit code it stands for. */
export function reportError (err: unknown, paint: Painter, write: (s: string) => void = s => { process.stderr.write(s) }): number {
  if (err instanceof ExitError) return err.code
  if (err instanceof UsageError) {
    write(`${paint.red('error:')} ${err.message}\n`)
    return EXIT.usage
  }
  if (err instanceof ApiRequestError) {
    // The anchor's messages are path-prefixed lines (`spec.nodes[0].host_ids[1]: …`), one problem each.
    write(`${paint.red('error:')} ${paint.bold(err.apiName)} (HTTP ${err.status} from ${err.server})\n`)
    for (const line of err.apiMessage.split('\n')) write(`  ${line}\n`)
    return EXIT.api
  }
  if (err instanceof UnreachableError) {
    write(`${paint.red('error:')} ${err.maybeApplied ? 'the request was sent but no answer came back; it may have been applied' : 'no server answered'}\n`)
    for (const a of err.attempts) write(`  ${a.server}: ${a.error}\n`)
    if (!err.maybeApplied) write('  (set the servers with --server URL[,URL...], PGMESH_SERVER or the config file)\n')
    return EXIT.unreachable
  }
  write(`${paint.red('error:')} ${err instanceof Error ? err.message : String(err)}\n`)
  return EXIT.failure
}
