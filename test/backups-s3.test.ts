// pgBackRest S3 repositories made real: an S3-compatible server (s3rver) on loopback over TLS with a throwaway CA,
// a daemon as a process with real Postgres. Full and incremental backups into the bucket, a point-in-time restore
// from it, and the access key and secret kept out of responses, logs, task logs, process arguments and environments,
// and world-readable files.
import { execFile } from 'node:child_process'
import { readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, TestCluster, queryInstance, until } from './helpers/cluster.js'
import { type LoopbackS3, startLoopbackS3 } from './helpers/s3.js'
import { ok } from './helpers/specs.js'

const exec = promisify(execFile)
const PASSWORD = 's3-password'
/** Write-only, both: must never come back in a response, a log, a task log, a process's arguments or a readable file. */
const S3_KEY = 'AKIAPGMESHS3TESTKEY42'
const S3_SECRET = 'pgmesh-s3-secret-9d2f61c0b7'

let cluster: TestCluster | undefined
let s3: LoopbackS3 | undefined

async function waitTask (d: DaemonProcess, taskId: string, timeoutMs = 120_000): Promise<any> {
  const task = await until(`task ${taskId} to finish`, async () => {
    const t = (await d.get(`/v1/databases/s3db/tasks/${taskId}`)).body
    return ['completed', 'failed', 'canceled'].includes(t.status as string) ? t : undefined
  }, timeoutMs, 250).catch(async (err: Error) => { throw new Error(`${err.message}\n${await taskLog(d, taskId)}\n${cluster?.problems() ?? ''}\n${await pgbackrestLogs()}`) })
  if (task.status !== 'completed') throw new Error(`task ${task.status as string}: ${task.error as string}\n${await taskLog(d, taskId)}\n${cluster?.problems() ?? ''}`)
  return task
}

/** The tail of every pgBackRest log file of host-1's instances, to explain a failing test. */
async function pgbackrestLogs (): Promise<string> {
  const { stdout } = await exec('sh', ['-c', `tail -n 15 ${join(cluster?.root ?? '', 'host-1', 'instances')}/*/log/*.log`]).catch(() => ({ stdout: '' }))
  return stdout
}

async function taskLog (d: DaemonProcess, taskId: string): Promise<string> {
  const log = (await d.get(`/v1/databases/s3db/tasks/${taskId}/log?limit=1000`)).body
  return (log.entries as Array<{ message: string }>).map(e => e.message).join('\n')
}

async function sql<T = any> (d: DaemonProcess, text: string): Promise<T[]> {
  return await queryInstance(d, 's3db', () => true, { user: 'admin', password: PASSWORD }, text)
}

async function ids (d: DaemonProcess): Promise<number[]> {
  return (await sql<{ id: number }>(d, 'SELECT id FROM items ORDER BY id')).map(r => r.id)
}

function range (from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i)
}

function repository (): Record<string, unknown> {
  if (s3 === undefined) throw new Error('no S3 server')
  return {
    id: 's3',
    type: 's3',
    s3_bucket: s3.bucket,
    s3_region: 'us-east-1',
    s3_endpoint: s3.endpoint,
    s3_key: S3_KEY,
    s3_key_secret: S3_SECRET,
    base_path: '/pgmesh',
    custom_options: { 's3-uri-style': 'path', 'storage-port': String(s3.port), 'storage-ca-file': s3.caFile }
  }
}

/**
 * Every pgbackrest and postgres process seen while it runs: their arguments and environments, read from /proc every
 * few milliseconds (archive-push and the backup's and restore's own pgbackrest processes live for under a second).
 */
class ProcessWatch {
  readonly seen = new Map<number, string>()
  private running = false
  private loop: Promise<void> = Promise.resolve()

  /** One sample after the other (never overlapping: the S3 server shares this process's event loop). */
  start (): void {
    this.running = true
    this.loop = (async () => {
      while (this.running) {
        await this.sample()
        await new Promise(resolve => setTimeout(resolve, 20))
      }
    })()
  }

  async stop (): Promise<void> {
    this.running = false
    await this.loop
  }

  private async sample (): Promise<void> {
    for (const name of await readdir('/proc').catch(() => [] as string[])) {
      if (!/^\d+$/.test(name) || this.seen.has(Number(name))) continue
      const args = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '')
      if (!/pgbackrest|postgres/.test(args)) continue
      const env = await readFile(`/proc/${name}/environ`, 'utf8').catch(() => '')
      this.seen.set(Number(name), `${args.replaceAll('\0', ' ')} ENV ${env.replaceAll('\0', ' ')}`)
    }
  }
}

describe('pgBackRest S3 repositories (s3rver on loopback, TLS)', () => {
  let h1: DaemonProcess
  const watch = new ProcessWatch()

  beforeAll(async () => {
    cluster = await TestCluster.create('backups-s3')
    s3 = await startLoopbackS3(cluster.root, { key: S3_KEY, secret: S3_SECRET })
    ;[h1] = await cluster.initAndJoin(1) as [DaemonProcess]
    watch.start()
  }, 60_000)

  afterAll(async () => {
    await watch.stop()
    await cluster?.destroy()
    await s3?.close()
  })

  it('takes full and incremental backups into the bucket and restores to a point in time from it', async () => {
    const created = await h1.post('/v1/databases', {
      id: 's3db',
      spec: {
        database_name: 's3db',
        database_users: [{ username: 'admin', password: PASSWORD, db_owner: true, attributes: ['LOGIN', 'SUPERUSER'] }],
        nodes: [{ name: 'n1', host_ids: ['host-1'] }],
        backup_config: { repositories: [repository()] }
      }
    })
    expect(created.status, JSON.stringify(created.body)).toBe(200)
    await waitTask(h1, created.body.task.task_id as string, 180_000)
    // The anchor's layout inside the bucket: <base_path>/databases/<database_id>/<repo id>/<node_name>.
    const nodeRepo = join(s3?.directory ?? '', s3?.bucket ?? '', 'pgmesh', 'databases', 's3db', 's3', 'n1')
    expect((await readdir(join(nodeRepo, 'backup', 'db'))).some(f => f.startsWith('backup.info'))).toBe(true)
    // The keys are in the instance's pgBackRest config file only, which is the Postgres OS user's alone.
    const instanceDir = join(cluster?.root ?? '', 'host-1', 'instances', (await readdir(join(cluster?.root ?? '', 'host-1', 'instances')))[0] ?? '')
    const conf = join(instanceDir, 'pgbackrest.conf')
    expect((await stat(conf)).mode & 0o777).toBe(0o600)
    expect(await readFile(conf, 'utf8')).toContain(`repo1-s3-key-secret=${S3_SECRET}`)

    await sql(h1, 'CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 100)')
    const full = await ok(h1.post('/v1/databases/s3db/nodes/n1/backups', { type: 'full' }), 'full backup')
    await waitTask(h1, full.task.task_id as string)
    expect(await taskLog(h1, full.task.task_id as string)).toMatch(/new backup label = \d{8}-\d{6}F/)
    await sql(h1, 'INSERT INTO items SELECT generate_series(101, 200)')
    const incr = await ok(h1.post('/v1/databases/s3db/nodes/n1/backups', { type: 'incr' }), 'incremental backup')
    await waitTask(h1, incr.task.task_id as string)
    expect(await taskLog(h1, incr.task.task_id as string)).toMatch(/new backup label = \d{8}-\d{6}F_\d{8}-\d{6}I/)
    const labels = (await readdir(join(nodeRepo, 'backup', 'db'))).filter(f => /^\d{8}-\d{6}F/.test(f))
    expect(labels.map(l => l.endsWith('I') ? 'incr' : 'full').sort()).toEqual(['full', 'incr'])

    // The target: after the second batch, before the third (the server's clock, a second apart each way).
    await new Promise(resolve => setTimeout(resolve, 1100))
    const at = (await sql<{ at: string }>(h1, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS at"))[0]?.at ?? ''
    await new Promise(resolve => setTimeout(resolve, 1100))
    await sql(h1, 'INSERT INTO items SELECT generate_series(201, 300)')
    // Archived through archive-push into the bucket, so recovery can stop right before the third batch.
    await sql(h1, 'SELECT pg_switch_wal()')
    await until('the third batch\'s WAL archived', async () => {
      const [row] = await sql<{ last: string | null, wal: string }>(h1, 'SELECT last_archived_wal AS last, pg_walfile_name(pg_current_wal_lsn()) AS wal FROM pg_stat_archiver')
      return row?.last !== null && row?.last !== undefined && row.last < row.wal
    }, 60_000, 250)

    const res = await h1.post('/v1/databases/s3db/restore', {
      restore_config: {
        source_database_id: 's3db',
        source_node_name: 'n1',
        source_database_name: 's3db',
        repository: repository(),
        restore_options: { type: 'time', target: at }
      }
    })
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    const nodeTask = (res.body.node_tasks as Array<{ task_id: string }>)[0]?.task_id ?? ''
    // The restore's own config file, while it exists, is the Postgres OS user's alone.
    const restoreConf = await until('the restore config file', async () => {
      const dir = join(cluster?.root ?? '', 'host-1', 'instances')
      for (const id of await readdir(dir)) {
        const file = join(dir, id, 'pgbackrest.restore.conf')
        const mode = await stat(file).then(s => s.mode & 0o777, () => undefined)
        if (mode !== undefined) return mode
      }
      return undefined
    }, 60_000, 20)
    expect(restoreConf).toBe(0o600)
    await waitTask(h1, nodeTask, 240_000)
    await waitTask(h1, res.body.task.task_id as string)
    const log = await taskLog(h1, nodeTask)
    expect(log).toMatch(/in bucket pgmesh-backups/)
    expect(log).toMatch(/restore command end: completed successfully/)
    expect(await ids(h1)).toEqual(range(1, 200))
  }, 600_000)

  it('keeps the S3 key and secret out of responses, logs, task logs, processes and readable files', async () => {
    await watch.stop()
    const secrets = [S3_KEY, S3_SECRET]
    const bodies = [(await h1.get('/v1/databases/s3db')).body, (await h1.get('/v1/databases')).body, (await h1.get('/v1/databases/s3db/tasks?limit=100')).body]
    for (const body of bodies) for (const s of secrets) expect(JSON.stringify(body)).not.toContain(s)
    const tasks = (await h1.get('/v1/databases/s3db/tasks?limit=100')).body.tasks as Array<{ task_id: string }>
    for (const t of tasks) for (const s of secrets) expect(await taskLog(h1, t.task_id)).not.toContain(s)
    for (const s of secrets) expect(h1.output).not.toContain(s)

    // pgBackRest ran (stanza-create, archive-push, backup, restore) and none had a secret in its arguments or environment.
    const processes = [...watch.seen.values()]
    expect(processes.filter(p => /pgbackrest.* backup( |$)/.test(p)).length, processes.join('\n')).toBeGreaterThan(0)
    expect(processes.filter(p => /pgbackrest.* archive-push /.test(p)).length).toBeGreaterThan(0)
    for (const p of processes) for (const s of secrets) expect(p).not.toContain(s)

    // The secrets are in exactly the files pgBackRest reads them from, each 0600; nowhere else under the daemon's
    // data dir (logs, pgBackRest's logs, Postgres's logs and data, the state documents).
    const { stdout } = await exec('grep', ['-rlaF', '-e', S3_KEY, '-e', S3_SECRET, join(cluster?.root ?? '', 'host-1')]).catch(() => ({ stdout: '' }))
    const holders = stdout.split('\n').filter(f => f !== '')
    for (const file of holders) {
      expect(file).toMatch(/pgbackrest(\.restore)?\.conf$|\/state\//)
      if (file.endsWith('.conf')) expect((await stat(file)).mode & 0o777).toBe(0o600)
    }
  })
})
