import { execFile } from 'node:child_process'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'

/**
 * The newest PostgreSQL this host has (Debian layout), as `major.minor`: what a database gets when its spec names
 * no version. Undefined when none is installed.
 */
export async function detectPostgresVersion (root = '/usr/lib/postgresql'): Promise<string | undefined> {
  const majors = (await readdir(root).catch(() => [])).filter(e => /^\d+$/.test(e)).map(Number).sort((a, b) => b - a)
  for (const major of majors) {
    try {
      const { stdout } = await promisify(execFile)(join(root, String(major), 'bin', 'postgres'), ['--version'])
      const m = /(\d+)\.(\d+)/.exec(stdout)
      if (m !== null) return `${m[1]}.${m[2]}`
    } catch { /* not a complete install; try the next */ }
  }
  return undefined
}
