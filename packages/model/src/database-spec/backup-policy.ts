/**
 * What pgBackRest options and backup schedules a spec or a backup request may carry. Options end up in a pgBackRest
 * config file and on its command line, run by the control plane as the Postgres OS user: like postgresql_conf, they
 * must not make it run a command, read or write a file the spec names, reach another host than the repository's, or
 * hold a secret outside the write-only fields.
 */
import { Cron } from 'croner'

const OPTION_NAME = /^[a-z0-9-]+$/
/** Paths pgBackRest reads as CA certificates only: a repository on a private CA needs them. */
const TRUST_ANCHOR_OPTIONS = new Set(['storage-ca-file', 'storage-ca-path'])
/** Options pgmesh sets itself (stanza, which server, where things are) or that are given by a field of their own. */
const OWNED_OPTIONS = new Set(['stanza', 'type', 'config', 'cipher-type', 'retention-full', 'retention-full-type', 'exec-id', 'online', 'archive-check'])

/**
 * Why a pgBackRest option name cannot be used, or undefined. A `repoN-` prefix is stripped first, as the anchor does.
 * `allowed`: owned options this use takes from the user all the same (a restore's `type`, say).
 */
export function pgbackrestOptionProblem (rawName: string, allowed: readonly string[] = []): string | undefined {
  if (!OPTION_NAME.test(rawName)) return 'invalid option name'
  const name = rawName.replace(/^repo[0-9]+-/, '')
  if (allowed.includes(name)) return undefined
  if (OWNED_OPTIONS.has(name) || name.startsWith('config-')) return `option '${rawName}' is set by pgmesh`
  if (name.includes('cmd')) return `option '${rawName}' runs a command and is not allowed`
  if (/^pg[0-9]*-/.test(name) || name.startsWith('host') || name.startsWith('tls-') || name.includes('-host')) return `option '${rawName}' names a server and is not allowed`
  // The trust anchors of the repository's TLS (a private S3 endpoint's CA): only read, and parsed as certificates.
  if (TRUST_ANCHOR_OPTIONS.has(name)) return undefined
  if (name === 'path' || name.endsWith('-path') || name.endsWith('-file')) return `option '${rawName}' names a path and is not allowed`
  if (/(key|pass|secret|token)$/.test(name) || name.includes('-key-') && !name.endsWith('-key-type')) return `option '${rawName}' holds a secret: use the repository's secret fields`
  return undefined
}

/** Option values are written one per line in a config file, or passed as one argument. */
export function pgbackrestValueProblem (value: string): string | undefined {
  return /[\r\n\0]/.test(value) ? 'must be a single line' : undefined
}

function cron (expression: string): Cron {
  // Paused: a pattern evaluated on demand, never a timer of its own. UTC, as the anchor evaluates schedules.
  return new Cron(expression, { timezone: 'UTC', paused: true })
}

/** Why a schedule's cron expression does not parse (5 fields, or 6 with seconds first), or undefined. */
export function cronProblem (expression: string): string | undefined {
  try {
    if (cron(expression).nextRun(new Date()) === null) return 'cron expression never fires'
    return undefined
  } catch (err) {
    return `invalid cron expression: ${(err as Error).message.replace(/^CronPattern: /, '')}`
  }
}

/** The schedule's latest tick at or before `now` (ms), in UTC; undefined when it has none. */
export function latestCronTick (expression: string, now: number): number | undefined {
  const previous = cron(expression).previousRuns(1, new Date(now + 1))[0]
  return previous?.getTime()
}
