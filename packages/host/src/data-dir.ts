import { chmod, readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'

/** What pgmesh itself keeps in the data dir; `instances/` belongs to the orchestrator and the postgres OS user. */
const PRIVATE_DIRS = ['state', 'tasks', 'reconciler']
const PRIVATE_FILES = ['cluster.key', 'data.key', 'peer.key']

/**
 * Tightens the modes of a data dir written by an earlier version (files were 0644 there): pgmesh's own files 0600 in
 * 0700 directories, and the data dir itself closed to group and others except traversal (0711 from a fresh start),
 * which the process orchestrator's postgres user needs to reach its instances. New files are created so already.
 */
export async function tightenDataDir (dataDir: string, log: Logger): Promise<void> {
  const top = await stat(dataDir)
  if ((top.mode & 0o066) !== 0) await chmod(dataDir, top.mode & 0o7711)
  for (const file of PRIVATE_FILES) await tighten(join(dataDir, file), 0o600, log)
  for (const dir of PRIVATE_DIRS) await tightenTree(join(dataDir, dir), log)
}

async function tightenTree (dir: string, log: Logger): Promise<void> {
  if (!(await tighten(dir, 0o700, log))) return
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) await tightenTree(path, log)
    else if (entry.isFile()) await tighten(path, 0o600, log)
  }
}

/** Sets `mode` when the path has more; false when it does not exist. */
async function tighten (path: string, mode: number, log: Logger): Promise<boolean> {
  let current: number
  try {
    current = (await stat(path)).mode & 0o777
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw err
  }
  if ((current & ~mode) !== 0) {
    await chmod(path, mode)
    log.info({ path, from: current.toString(8), to: mode.toString(8) }, 'tightened file mode')
  }
  return true
}
