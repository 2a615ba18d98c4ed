// Backups and restores that are interrupted, made real: a daemon as a process, real Postgres, a posix repository in
// the test's temp dir, a table large enough (~200 MB) that pgBackRest runs for seconds. A daemon SIGKILLed in the
// middle of a backup leaves its pgbackrest running and holding the stanza's lock: the next backup stops it and
// succeeds. A canceled restore stops the node's running pgbackrest restore, ends canceled with the database failed,
// and a later restore works.
import { execFile } from 'node:child_process'
import { chown, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, TestCluster, queryInstance, until } from './helpers/cluster.js'
import { ok } from './helpers/specs.js'

const exec = promisify(execFile)
const PASSWORD = 'rc-password'
const ROWS = 3_000_000

let cluster: TestCluster | undefined

async function task (d: DaemonProcess, taskId: string): Promise<any> {
  return (await d.get(`/v1/databases/rc/tasks/${taskId}`)).body
}

async function waitTask (d: DaemonProcess, taskId: string, timeoutMs = 180_000): Promise<any> {
  return await until(`task ${taskId} to finish`, async () => {
    const t = await task(d, taskId)
    return ['completed', 'failed', 'canceled'].includes(t.status as string) ? t : undefined
  }, timeoutMs, 250).catch(async (err: Error) => { throw new Error(`${err.message}\n${await taskLog(d, taskId)}\n${cluster?.problems() ?? ''}`) })
}

async function taskLog (d: DaemonProcess, taskId: string): Promise<string> {
  const log = (await d.get(`/v1/databases/rc/tasks/${taskId}/log?limit=1000`)).body
  return (log.entries as Array<{ message: string }>).map(e => e.message).join('\n')
}

async function sql<T = any> (d: DaemonProcess, text: string): Promise<T[]> {
  return await queryInstance(d, 'rc', () => true, { user: 'admin', password: PASSWORD }, text)
}

/** The pgbackrest processes running `command` for this test's instances (their arguments name the temp dir). */
async function pgbackrestRunning (command: 'backup' | 'restore'): Promise<number[]> {
  const { stdout } = await exec('pgrep', ['-f', `pgbackrest .*${cluster?.root ?? 'none'}.* ${command}$`]).catch(() => ({ stdout: '' }))
  return stdout.split('\n').filter(l => l !== '').map(Number)
}

describe('interrupted pgBackRest backups and restores', () => {
  let h1: DaemonProcess
  let repo: string

  beforeAll(async () => {
    cluster = await TestCluster.create('backups-recovery')
    ;[h1] = await cluster.initAndJoin(1) as [DaemonProcess]
    repo = join(cluster.root, 'repo')
    await mkdir(repo, { mode: 0o700 })
    const { stdout } = await exec('id', ['-u', 'postgres'])
    await chown(repo, Number(stdout.trim()), Number(stdout.trim()))
    const created = await ok(h1.post('/v1/databases', {
      id: 'rc',
      spec: {
        database_name: 'rc',
        database_users: [{ username: 'admin', password: PASSWORD, db_owner: true, attributes: ['LOGIN', 'SUPERUSER'] }],
        nodes: [{ name: 'n1', host_ids: ['host-1'] }],
        backup_config: { repositories: [{ id: 'local', type: 'posix', base_path: repo }] }
      }
    }), 'create rc')
    await waitTask(h1, created.task.task_id as string)
    await sql(h1, `CREATE TABLE items AS SELECT g AS id, md5(g::text) AS a, md5((g + 1)::text) AS b FROM generate_series(1, ${ROWS}) g`)
  }, 300_000)

  afterAll(async () => { await cluster?.destroy() })

  it('recovers from a daemon SIGKILLed mid-backup: the next backup stops the leftover pgbackrest and succeeds', async () => {
    // compress-level 9: slow enough that it is still running once the daemon is back.
    const first = await ok(h1.post('/v1/databases/rc/nodes/n1/backups', { type: 'full', backup_options: { 'compress-level': '9' } }), 'first backup')
    await until('pgBackRest copying files', async () => /backup start archive/.test(await taskLog(h1, first.task.task_id as string)), 60_000, 50)
    await h1.stop('SIGKILL')
    const leftover = await pgbackrestRunning('backup')
    expect(leftover.length, 'the killed daemon\'s pgbackrest backup still runs').toBeGreaterThan(0)
    await h1.start()

    const second = await ok(h1.post('/v1/databases/rc/nodes/n1/backups', { type: 'full' }), 'second backup')
    const done = await waitTask(h1, second.task.task_id as string)
    const log = await taskLog(h1, second.task.task_id as string)
    expect(done.status, log).toBe('completed')
    expect(log).toMatch(/stopped pgBackRest \(pid \d+\) left running by an earlier run of this daemon/)
    expect(log).toMatch(/backup command end: completed successfully/)
    const interrupted = await waitTask(h1, first.task.task_id as string, 30_000)
    expect([interrupted.status, interrupted.error]).toEqual(['failed', 'the backup was interrupted (its host restarted)'])
    expect(await pgbackrestRunning('backup')).toEqual([])
  }, 300_000)

  it('stops a running node restore when its restore task is canceled; a later restore works', async () => {
    const restoreConfig = { source_database_id: 'rc', source_node_name: 'n1', source_database_name: 'rc', repository: { id: 'local', type: 'posix', base_path: repo }, restore_options: { type: 'immediate' } }
    const res = await ok(h1.post('/v1/databases/rc/restore', { restore_config: restoreConfig }), 'restore')
    const nodeTask = (res.node_tasks as Array<{ task_id: string }>)[0]?.task_id ?? ''
    await until('pgBackRest restoring', async () => (await pgbackrestRunning('restore')).length > 0, 60_000, 20)
    // The anchor's cancel is a GET.
    const canceling = await h1.get(`/v1/databases/rc/tasks/${res.task.task_id as string}/cancel`)
    expect(canceling.status, JSON.stringify(canceling.body)).toBe(200)

    const node = await waitTask(h1, nodeTask, 60_000)
    const log = await taskLog(h1, nodeTask)
    expect(node.status, log).toBe('canceled')
    expect(log).toMatch(/restore command begin/)
    expect(log).not.toMatch(/restore command end: completed successfully/)
    expect(log).toMatch(/primary stays stopped with an incomplete data directory/)
    expect((await waitTask(h1, res.task.task_id as string, 30_000)).status).toBe('canceled')
    expect(await pgbackrestRunning('restore')).toEqual([])
    const db = (await h1.get('/v1/databases/rc')).body
    expect(db.state).toBe('failed')
    // Still stopped a few seconds later: nothing starts a half-restored data directory behind the user's back.
    await new Promise(resolve => setTimeout(resolve, 3000))
    await expect(sql(h1, 'SELECT 1')).rejects.toThrow()

    const again = await ok(h1.post('/v1/databases/rc/restore', { restore_config: restoreConfig }), 'restore again')
    const againNode = (again.node_tasks as Array<{ task_id: string }>)[0]?.task_id ?? ''
    expect((await waitTask(h1, againNode, 300_000)).status, await taskLog(h1, againNode)).toBe('completed')
    expect((await waitTask(h1, again.task.task_id as string)).status).toBe('completed')
    expect((await h1.get('/v1/databases/rc')).body.state).toBe('available')
    const counted = await sql<{ n: string }>(h1, 'SELECT count(*) AS n FROM items')
    expect(Number(counted[0]?.n)).toBe(ROWS)
  }, 600_000)
})
