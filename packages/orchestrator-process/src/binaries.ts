import { existsSync } from 'node:fs'
import { access, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { InvalidInputError } from '@pgmesh/model'
import { cachedAsync, describedParameters, type ReplicationLibrary } from '@pgmesh/orchestrator'
import { runCommand } from './system.js'

/**
 * A PostgreSQL installation root has one of two layouts:
 * - Debian's, `<root>/<major>/{bin,lib}`, several majors side by side (the default root, /usr/lib/postgresql);
 * - a single installation, `<root>/bin` and `<root>/lib` (pgEdge's Spock builds, a source build's prefix), whose
 *   major is the one its `postgres --version` names.
 * A root with `bin/postgres` is the single kind.
 */
export const DEBIAN_POSTGRES_ROOT = '/usr/lib/postgresql'

async function exists (path: string): Promise<boolean> {
  return await access(path).then(() => true, () => false)
}

function isSingleInstallation (root: string): boolean {
  return existsSync(join(root, 'bin', 'postgres'))
}

/** `postgres --version` of a binary directory (allowed as root), cached per directory like serverParameters. */
const binaryVersion = cachedAsync(async (bin: string): Promise<{ major: number, version: string }> => await readBinaryVersion(bin))

async function readBinaryVersion (bin: string): Promise<{ major: number, version: string }> {
  const out = await runCommand(join(bin, 'postgres'), ['--version'], { runAs: undefined, cwd: '/' })
  // "postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)", "postgres (PostgreSQL) 18beta1"
  const match = /\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?/.exec(out)
  if (match === null) throw new Error(`${join(bin, 'postgres')} --version printed no PostgreSQL version: ${out.trim()}`)
  return { major: Number(match[1]), version: match[2] === undefined ? String(match[1]) : `${match[1]}.${match[2]}` }
}

/** One major's `major.minor` as its binary says now (not cached: a package upgrade replaces the binary). */
export async function installedVersion (root: string, major: number): Promise<string> {
  return (await readBinaryVersion(binDir(root, major))).version
}

/**
 * Every installed major's `major.minor` as its binary says now (not cached: a package upgrade shows at once), oldest
 * first: the minor versions this host's packages provide.
 */
export async function installedPostgresVersions (root: string): Promise<string[]> {
  const majors = isSingleInstallation(root) ? [(await readBinaryVersion(join(root, 'bin'))).major] : await installedMajors(root)
  const out: string[] = []
  for (const major of majors) out.push((await readBinaryVersion(binDir(root, major))).version)
  return out
}

async function installedMajors (root: string): Promise<number[]> {
  if (isSingleInstallation(root)) return [(await binaryVersion(join(root, 'bin'))).major]
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

/** The newest installed version as `major.minor` (what a database gets when its spec names none), if any. */
export async function newestPostgresVersion (root: string): Promise<string | undefined> {
  const newest = (await installedMajors(root)).at(-1)
  return newest === undefined ? undefined : (await binaryVersion(binDir(root, newest))).version
}

export function binDir (root: string, major: number): string {
  return isSingleInstallation(root) ? join(root, 'bin') : join(root, String(major), 'bin')
}

/** Where extension libraries may be: a single installation's pkglibdir is `lib/postgresql` unless its prefix names postgres. */
function libDirs (root: string, major: number): string[] {
  return isSingleInstallation(root) ? [join(root, 'lib'), join(root, 'lib', 'postgresql')] : [join(root, String(major), 'lib')]
}

/** Spock when the host has it (pgEdge's packages), else pglogical (Debian's postgresql-NN-pglogical). */
export async function replicationLibrary (root: string, major: number): Promise<ReplicationLibrary> {
  for (const library of ['spock', 'pglogical'] as const) {
    for (const dir of libDirs(root, major)) if (await exists(join(dir, `${library}.so`))) return library
  }
  throw new Error(`neither spock nor pglogical is installed for PostgreSQL ${major} under ${root} (run scripts/install-deps.sh)`)
}

/**
 * The configuration parameters a server binary knows, from `postgres --describe-config` (allowed as root, ~20 ms),
 * cached per binary directory and version: a minor-version update replaces the binary (and may add parameters, as
 * 15.19 added output_plugin_libraries), so a new version is asked again.
 */
const describedBy = cachedAsync(async (binary: { bin: string, version: string }): Promise<ReadonlySet<string>> =>
  describedParameters(await runCommand(join(binary.bin, 'postgres'), ['--describe-config'], { runAs: undefined, cwd: '/' })),
binary => `${binary.bin} ${binary.version}`)

/** `version`: the binary's as installedVersion read it (the cache key; the caller has just asked). */
export async function serverParameters (bin: string, version: string): Promise<ReadonlySet<string>> {
  return await describedBy({ bin, version })
}
