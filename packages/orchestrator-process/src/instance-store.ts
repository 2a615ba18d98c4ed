import { createHash } from 'node:crypto'
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { InvalidInputError } from '@pgmesh/model'
import type { StandbyOf } from './postgres-config.js'

/** What the orchestrator remembers about an instance between calls and across daemon restarts. */
export interface InstanceRecord {
  instanceId: string
  /** Chosen once (fixed from the spec, or random for port 0) and kept. */
  port: number
  postgresMajor: number
  /** initdb or pg_basebackup finished; a data directory without it is a half-made leftover and is redone. */
  initialized: boolean
  /** false after stopInstance: supervision leaves the instance down. */
  desiredRunning: boolean
  /** Set while the instance is a streaming replica (cleared by promote). */
  standbyOf?: StandbyOf
  /** Rendered settings last written to the managed conf file, to tell what a spec change touches. */
  appliedSettings: Record<string, string>
  /** Scripts are run once only: after the first successful run (or a first setup without them) they never run again. */
  scriptsDone: { postInit: boolean, postDatabaseCreate: boolean }
}

const INSTANCE_ID = /^[a-z0-9][a-z0-9_-]{0,62}$/
const SOCKET_NAME_ROOM = '/.s.PGSQL.65535.lock'.length
const MAX_SOCKET_PATH = 107

export function assertInstanceId (instanceId: string): void {
  if (!INSTANCE_ID.test(instanceId)) {
    throw new InvalidInputError(`invalid instance id '${instanceId}': use 1-63 lowercase letters, digits, '-' or '_'`)
  }
}

/** Where an instance's files live: everything under one directory, so removing it leaves nothing behind. */
export class InstancePaths {
  readonly dir: string
  readonly pgdata: string
  readonly logDir: string
  readonly stateFile: string
  readonly socketDir: string

  constructor (instancesDir: string, readonly instanceId: string) {
    this.dir = join(instancesDir, instanceId)
    this.pgdata = join(this.dir, 'pgdata')
    this.logDir = join(this.dir, 'log')
    this.stateFile = join(this.dir, 'state.json')
    const inside = join(this.dir, 'run')
    // Unix socket paths are limited to ~107 bytes; a deep data dir falls back to a short per-instance dir in /tmp.
    this.socketDir = inside.length + SOCKET_NAME_ROOM <= MAX_SOCKET_PATH
      ? inside
      : `/tmp/pgmesh-${createHash('sha256').update(this.dir).digest('hex').slice(0, 16)}`
  }

  /** The postmaster's stdout/stderr before the logging collector takes over (startup failures land here). */
  get startupLog (): string {
    return join(this.logDir, 'startup.log')
  }
}

export async function readState (paths: InstancePaths): Promise<InstanceRecord | undefined> {
  try {
    return JSON.parse(await readFile(paths.stateFile, 'utf8')) as InstanceRecord
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

/** Written to a temporary file and renamed, so a crash never leaves a torn state file. */
export async function writeState (paths: InstancePaths, state: InstanceRecord): Promise<void> {
  await mkdir(paths.dir, { recursive: true })
  const temporary = `${paths.stateFile}.tmp`
  await writeFile(temporary, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 })
  await rename(temporary, paths.stateFile)
}

export async function listInstanceIds (instancesDir: string): Promise<string[]> {
  try {
    const entries = await readdir(instancesDir, { withFileTypes: true })
    return entries.filter(e => e.isDirectory() && INSTANCE_ID.test(e.name)).map(e => e.name).sort()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
}
