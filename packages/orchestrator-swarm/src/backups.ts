import { createHash } from 'node:crypto'
import { chown, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { BackupRun, InstanceRestore, InstanceSpec } from '@pgmesh/model'
import { backupArgs, pgbackrestArgs, type PgbackrestPaths, renderPgbackrestConf, renderRestoreConf, restoreArgs } from '@pgmesh/orchestrator'
import type Docker from 'dockerode'
import {
  CONTAINER_PATHS, PGBACKREST_CONF_NAME, PGBACKREST_LOCK_NAME, PGBACKREST_RESTORE_CONF_NAME, restoreContainerName, restoreContainerSpec, type RestoreInput
} from './task-spec.js'

/** Where the image's pgBackRest is (Debian's package; the offline image has it). */
const PGBACKREST = '/usr/bin/pgbackrest'
/** The pid of a running backup inside the container, so a cancel can stop it (docker cannot signal an exec). */
const BACKUP_PID_FILE = `${CONTAINER_PATHS.pgbackrestLock}/pgmesh-backup.pid`

/**
 * pgBackRest for an instance in a container: its config file (0600, owned by the container's postgres user) in the
 * instance's data mount, with container paths, so archive_command (`pgbackrest archive-push`, run by the postmaster
 * inside) and the backups and checks run here through `docker exec` read the same file. Written before the container
 * starts when it is new; removed with backup_config. Repositories on the host's disk reach the container through the
 * spec's extra_volumes, as with the anchor.
 */
export async function writePgbackrestFiles (dataDir: string, spec: Pick<InstanceSpec, 'backup'>, port: number): Promise<void> {
  const file = join(dataDir, PGBACKREST_CONF_NAME)
  if (spec.backup === undefined) {
    await rm(file, { force: true })
    return
  }
  const content = renderPgbackrestConf(spec.backup, containerPaths(CONTAINER_PATHS.pgbackrestConf, port))
  // The data mount's owner is the image's postgres user once a container has prepared it (root before: the first
  // container's start script hands both over then).
  const owner = await stat(dataDir)
  const lockDir = join(dataDir, PGBACKREST_LOCK_NAME)
  await mkdir(lockDir, { recursive: true, mode: 0o700 })
  await chown(lockDir, owner.uid, owner.gid)
  if (await readFile(file, 'utf8').catch(() => undefined) === content) return
  await writeOwnedFile(file, content, owner)
}

/** pgBackRest's view of the instance from inside its container, with this config file. */
function containerPaths (config: string, port: number): PgbackrestPaths {
  return { config, pgdata: CONTAINER_PATHS.pgdata, socketDir: CONTAINER_PATHS.socket, port, lockDir: CONTAINER_PATHS.pgbackrestLock, logDir: CONTAINER_PATHS.log }
}

/** Replaced atomically, 0600 and owned by `owner` from the start (it may hold repository keys). */
async function writeOwnedFile (file: string, content: string, owner: { uid: number, gid: number }): Promise<void> {
  await rm(`${file}.tmp`, { force: true })
  await writeFile(`${file}.tmp`, content, { mode: 0o600 })
  await chown(`${file}.tmp`, owner.uid, owner.gid)
  await rename(`${file}.tmp`, file)
}

/** A hash of the instance's pgBackRest config, to check the stanza once per config; undefined without one. */
export async function pgbackrestConfHash (dataDir: string): Promise<string | undefined> {
  const config = await readFile(join(dataDir, PGBACKREST_CONF_NAME), 'utf8').catch(() => undefined)
  return config === undefined ? undefined : createHash('sha256').update(config).digest('hex').slice(0, 16)
}

export interface ExecResult { exitCode: number, tail: string[] }

/** A TTY's output cut into lines (CRLF too), each non-empty one handed on; the last five kept for an error. */
class OutputLines {
  readonly tail: string[] = []
  private pending = ''

  constructor (private readonly onLine?: (line: string) => void) {}

  push (chunk: Buffer): void {
    const lines = (this.pending + chunk.toString('utf8')).split('\n')
    this.pending = lines.pop() ?? ''
    for (const line of lines) this.take(line)
  }

  end (): void {
    this.take(this.pending)
    this.pending = ''
  }

  private take (line: string): void {
    const text = line.replace(/\r$/, '')
    if (text.trim() === '') return
    this.tail.push(text)
    if (this.tail.length > 5) this.tail.shift()
    this.onLine?.(text)
  }
}

/**
 * A command in a running container (docker exec, with a TTY so that its output comes back as plain text), each
 * non-empty line handed to onLine; resolves with its exit code and last lines.
 */
export async function execIn (
  docker: Docker, containerId: string, command: { cmd: string[], user: 'root' | 'postgres', onLine?: (line: string) => void }
): Promise<ExecResult> {
  const exec = await docker.getContainer(containerId).exec({
    Cmd: command.cmd, User: command.user, AttachStdout: true, AttachStderr: true, Tty: true, Env: ['LANG=C.UTF-8']
  })
  const stream = await exec.start({ hijack: true, stdin: false, Tty: true })
  const lines = new OutputLines(command.onLine)
  await new Promise<void>((resolve, reject) => {
    stream.on('data', (chunk: Buffer) => { lines.push(chunk) })
    stream.once('end', resolve)
    stream.once('close', resolve)
    stream.once('error', reject)
  })
  lines.end()
  const tail = lines.tail
  // The exec may still be finishing when its stream ends.
  for (let i = 0; ; i++) {
    const info = await exec.inspect()
    if (info.Running !== true || i >= 100) return { exitCode: info.ExitCode ?? -1, tail }
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

async function mustSucceed (what: string, result: Promise<ExecResult>): Promise<void> {
  const { exitCode, tail } = await result
  if (exitCode !== 0) throw new Error(`${what} exited with ${exitCode}: ${tail.join(' | ')}`)
}

/** The directories of the config's posix and cifs repositories, as written by renderPgbackrestConf. */
function fileRepositoryPaths (config: string): string[] {
  const repos = new Map<string, { type?: string, path?: string }>()
  for (const match of config.matchAll(/^repo([0-9]+)-(type|path)=(.*)$/gm)) {
    const repo = repos.get(match[1] ?? '') ?? {}
    repo[match[2] as 'type' | 'path'] = match[3]
    repos.set(match[1] ?? '', repo)
  }
  return [...repos.values()].filter(r => (r.type === 'posix' || r.type === 'cifs') && r.path !== undefined).map(r => r.path as string)
}

/**
 * The stanza created and checked (WAL reaches every repository). A posix repository's directory is made first and
 * handed to the container's postgres user: the user mounts only its base (extra_volumes), as with the anchor.
 */
export async function ensureStanzaIn (docker: Docker, containerId: string, dataDir: string): Promise<void> {
  const config = await readFile(join(dataDir, PGBACKREST_CONF_NAME), 'utf8')
  for (const dir of fileRepositoryPaths(config)) {
    await mustSucceed(`preparing the repository directory ${dir}`, execIn(docker, containerId, {
      cmd: ['sh', '-c', 'mkdir -p "$1" && chown postgres:postgres "$1" && chmod 0750 "$1"', 'pgmesh-repository', dir], user: 'root'
    }))
  }
  for (const command of ['stanza-create', 'check']) {
    const extra = command === 'stanza-create' ? ['--io-timeout=10'] : []
    await mustSucceed(`pgbackrest ${command}`, execIn(docker, containerId, { cmd: [PGBACKREST, ...pgbackrestArgs(CONTAINER_PATHS.pgbackrestConf, command, extra)], user: 'postgres' }))
  }
}

/**
 * One backup inside the instance's container, its output handed to onLine. A cancel (signal) stops pgBackRest with
 * SIGTERM through its pid file, so it releases its lock and the next backup cleans up after it.
 */
export async function backupIn (docker: Docker, containerId: string, run: BackupRun, onLine: (line: string) => void, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted()
  const args = backupArgs(CONTAINER_PATHS.pgbackrestConf, run)
  const stop = (): void => {
    void execIn(docker, containerId, { cmd: ['sh', '-c', `kill -TERM "$(cat ${BACKUP_PID_FILE})"`], user: 'postgres' }).catch(() => undefined)
  }
  signal?.addEventListener('abort', stop, { once: true })
  try {
    const result = await execIn(docker, containerId, {
      cmd: ['sh', '-c', `echo $$ > ${BACKUP_PID_FILE}; exec "$@"`, 'pgmesh-backup', PGBACKREST, ...args], user: 'postgres', onLine
    })
    if (signal?.aborted === true) throw new Error('canceled')
    if (result.exitCode !== 0) throw new Error(`pgbackrest backup exited with ${result.exitCode}: ${result.tail.join(' | ')}`)
  } finally {
    signal?.removeEventListener('abort', stop)
  }
}

/**
 * A restore's config file (the source node's repository as repo1, container paths), 0600 in the data mount: owned
 * by the data mount's owner, or handed to postgres by the restore container's PREPARE step on a new instance.
 */
export async function writeRestoreConf (dataDir: string, restore: InstanceRestore, port: number): Promise<void> {
  const content = renderRestoreConf(restore, containerPaths(CONTAINER_PATHS.pgbackrestRestoreConf, port))
  await writeOwnedFile(join(dataDir, PGBACKREST_RESTORE_CONF_NAME), content, await stat(dataDir))
}

export async function removeRestoreConf (dataDir: string): Promise<void> {
  await rm(join(dataDir, PGBACKREST_RESTORE_CONF_NAME), { force: true })
}

/**
 * `pgbackrest restore` into the instance's emptied pgdata, in a one-shot container (RESTORE_SCRIPT) run to the end,
 * each line of its output handed to onLine; a cancel stops it (SIGTERM). The container is removed afterwards.
 */
export async function restoreIn (
  docker: Docker, input: Omit<RestoreInput, 'restoreArgs'>, restore: InstanceRestore, onLine: (line: string) => void, signal?: AbortSignal
): Promise<void> {
  signal?.throwIfAborted()
  const name = restoreContainerName(input.instanceId)
  await docker.getContainer(name).remove({ force: true }).catch(() => undefined)
  const container = await docker.createContainer(restoreContainerSpec({ ...input, restoreArgs: restoreArgs(CONTAINER_PATHS.pgbackrestRestoreConf, restore.options) }))
  const stop = (): void => { void container.kill({ signal: 'SIGTERM' }).catch(() => undefined) }
  signal?.addEventListener('abort', stop, { once: true })
  try {
    const stream = await container.attach({ stream: true, stdout: true, stderr: true })
    const lines = new OutputLines(onLine)
    stream.on('data', (chunk: Buffer) => { lines.push(chunk) })
    await container.start()
    const { StatusCode: code } = await container.wait() as { StatusCode: number }
    lines.end()
    if (signal?.aborted === true) throw new Error('canceled')
    if (code !== 0) throw new Error(`pgbackrest restore exited with ${code}: ${lines.tail.join(' | ')}`)
  } finally {
    signal?.removeEventListener('abort', stop)
    await container.remove({ force: true }).catch(() => undefined)
  }
}
