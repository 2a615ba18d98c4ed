import { access, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { InvalidInputError } from '@pgmesh/model'
import { runCommand } from './system.js'
import type { ReplicationLibrary } from './postgres-config.js'

/** Debian's layout: /usr/lib/postgresql/<major>/{bin,lib}, several majors side by side. */
export const DEBIAN_POSTGRES_ROOT = '/usr/lib/postgresql'

async function exists (path: string): Promise<boolean> {
  return await access(path).then(() => true, () => false)
}

async function installedMajors (root: string): Promise<number[]> {
  const entries = await readdir(root).catch(() => [])
  const majors: number[] = []
  for (const entry of entries) {
    if (/^\d+$/.test(entry) && await exists(join(root, entry, 'bin', 'postgres'))) majors.push(Number(entry))
  }
  return majors.sort((a, b) => a - b)
}

/** The major to use for `version` (`15`, `15.18`), or the newest installed one when none is asked for. */
export async function resolveMajor (root: string, version: string | undefined): Promise<number> {
  const majors = await installedMajors(root)
  if (version === undefined) {
    const newest = majors.at(-1)
    if (newest === undefined) throw new Error(`no PostgreSQL installed under ${root} (run scripts/install-deps.sh)`)
    return newest
  }
  const major = Number(version.split('.')[0])
  if (!majors.includes(major)) {
    throw new InvalidInputError(`PostgreSQL ${version} is not installed on this host (installed: ${majors.join(', ') || 'none'})`)
  }
  return major
}

export function binDir (root: string, major: number): string {
  return join(root, String(major), 'bin')
}

/** Spock when the host has it (pgEdge's packages), else pglogical (Debian's postgresql-NN-pglogical). */
export async function replicationLibrary (root: string, major: number): Promise<ReplicationLibrary> {
  if (await exists(join(root, String(major), 'lib', 'spock.so'))) return 'spock'
  if (await exists(join(root, String(major), 'lib', 'pglogical.so'))) return 'pglogical'
  throw new Error(`neither spock nor pglogical is installed for PostgreSQL ${major} (run scripts/install-deps.sh)`)
}

/** The parameter names in `postgres --describe-config`'s output (one tab-separated line per parameter, name first). */
export function describedParameters (output: string): ReadonlySet<string> {
  return new Set(output.split('\n').map(line => line.split('\t')[0]?.trim() ?? '').filter(name => name !== ''))
}

const parametersOf = new Map<string, Promise<ReadonlySet<string>>>()

/**
 * The configuration parameters a server binary knows, from `postgres --describe-config` (allowed as root, ~20 ms),
 * cached per binary directory: a minor-version update replaces the binary, and the daemon restarts with it.
 */
export async function serverParameters (bin: string): Promise<ReadonlySet<string>> {
  let known = parametersOf.get(bin)
  if (known === undefined) {
    known = runCommand(join(bin, 'postgres'), ['--describe-config'], { runAs: undefined, cwd: '/' })
      .then(describedParameters)
    known.catch(() => { parametersOf.delete(bin) })
    parametersOf.set(bin, known)
  }
  return await known
}
