// Backups with pgBackRest made real: daemons as processes, a node with a primary (host-1) and a streaming replica
// (host-2), a posix repository in the test's temp dir. Archiving, stanza, on-demand full and incremental backups,
// schedules on the primary's host only, retention, refusals, and the repository key kept out of everything.
import { execFile } from 'node:child_process'
import { chown, mkdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cli } from './helpers/cli.js'
import { type DaemonProcess, TestCluster, queryInstance, until } from './helpers/cluster.js'
import { ok, updateSpec } from './helpers/specs.js'

const exec = promisify(execFile)
const PASSWORD = 'bk-password'
/** Write-only: must never come back in a response, a log, a task log or a process's arguments. */
const REPO_KEY = 'AKIA-PGMESH-TEST-SECRET-7f3c9e'

let cluster: TestCluster | undefined

interface Instance { id: string, node_name: string, host_id: string, state: string, connection_info?: { addresses: string[], port: number }, postgres?: { role?: string } }

async function waitTask (d: DaemonProcess, taskId: string, timeoutMs = 90_000): Promise<any> {
  const task = await until(`task ${taskId} to finish`, async () => {
    const t = (await d.get(`/v1/databases/bk/tasks/${taskId}`)).body
    return ['completed', 'failed', 'canceled'].includes(t.status as string) ? t : undefined
  }, timeoutMs, 200)
  if (task.status !== 'completed') throw new Error(`task ${task.status as string}: ${task.error as string}\n${await taskLog(d, taskId)}\n${cluster?.problems() ?? ''}`)
  return task
}

async function taskLog (d: DaemonProcess, taskId: string): Promise<string> {
  const log = (await d.get(`/v1/databases/bk/tasks/${taskId}/log`)).body
  return (log.entries as Array<{ message: string, fields: { host_id: string } }>).map(e => `${e.fields.host_id} ${e.message}`).join('\n')
}

async function instances (d: DaemonProcess): Promise<Instance[]> {
  return (await d.get('/v1/databases/bk')).body.instances as Instance[]
}

async function sql<T = any> (d: DaemonProcess, hostId: string, text: string): Promise<T[]> {
  return await queryInstance(d, 'bk', i => i.host_id === hostId, { user: 'admin', password: PASSWORD }, text)
}

/** host-1's instance's pgBackRest config file. */
async function configFile (d: DaemonProcess): Promise<string> {
  const id = (await instances(d)).find(i => i.host_id === 'host-1')?.id ?? 'none'
  return join(cluster?.root ?? '', 'host-1', 'instances', id, 'pgbackrest.conf')
}

/** `pgbackrest info` of the node's repository, read through host-1's instance config as the postgres OS user. */
async function backupsInRepository (d: DaemonProcess): Promise<Array<{ type: string, annotation?: Record<string, string> }>> {
  const config = await configFile(d)
  const { stdout } = await exec('runuser', ['-u', 'postgres', '--', 'pgbackrest', `--config=${config}`, '--stanza=db', '--output=json', 'info'])
  const info = JSON.parse(stdout) as Array<{ status: { message: string }, backup: Array<{ type: string, annotation?: Record<string, string> }> }>
  return info[0]?.backup ?? []
}

describe('pgBackRest backups of a node with a replica', () => {
  let h1: DaemonProcess
  let h2: DaemonProcess
  let repo: string
  let backupConfig: Record<string, any>

  beforeAll(async () => {
    cluster = await TestCluster.create('backups')
    ;[h1, h2] = await cluster.initAndJoin(2) as [DaemonProcess, DaemonProcess]
    // The repository is the Postgres OS user's to write, as a mounted backup volume would be.
    repo = join(cluster.root, 'repo')
    await mkdir(repo, { mode: 0o700 })
    const { stdout } = await exec('id', ['-u', 'postgres'])
    await chown(repo, Number(stdout.trim()), Number(stdout.trim()))
    backupConfig = { repositories: [{ id: 'local', type: 'posix', base_path: repo, s3_key: REPO_KEY, retention_full: 1, retention_full_type: 'count' }] }
  }, 60_000)

  afterAll(async () => { await cluster?.destroy() })

  it('refuses bad backup configs with path-prefixed invalid_input', async () => {
    const spec = (backup: unknown): Record<string, unknown> => ({ database_name: 'bad', nodes: [{ name: 'n1', host_ids: ['host-1'] }], backup_config: backup })
    const cases: Array<[unknown, string]> = [
      [{ repositories: [{ type: 'posix', base_path: 'relative/dir' }] }, 'backup_config.repositories[0].base_path: base_path must be absolute for posix repositories'],
      [{ repositories: [{ type: 'posix', base_path: '/x', custom_options: { 'cmd-ssh': '/bin/sh' } }] }, "backup_config.repositories[0].custom_options[cmd-ssh]: option 'cmd-ssh' runs a command and is not allowed"],
      [{ repositories: [{ type: 'posix', base_path: '/x', custom_options: { 'repo1-path': '/etc' } }] }, "backup_config.repositories[0].custom_options[repo1-path]: option 'repo1-path' names a path and is not allowed"],
      [{ repositories: [{ type: 'posix', base_path: '/x' }], schedules: [{ id: 's', type: 'full', cron_expression: '61 * * * *' }] }, 'backup_config.schedules[0].cron_expression: invalid cron expression: Invalid value for minute: 61'],
      [{ repositories: [{ type: 's3' }] }, 'backup_config.repositories[0].s3_bucket: s3_bucket is required for s3 repositories']
    ]
    for (const [backup, message] of cases) {
      const res = await h1.post('/v1/databases', { id: 'bad', spec: spec(backup) })
      expect(res.status, JSON.stringify(res.body)).toBe(400)
      expect(res.body.name).toBe('invalid_input')
      expect(res.body.message).toContain(message)
    }
  })

  it('archives WAL from the primary only, with the stanza created and checked', async () => {
    const res = await h1.post('/v1/databases', {
      id: 'bk',
      spec: {
        database_name: 'bk',
        database_users: [{ username: 'admin', password: PASSWORD, db_owner: true, attributes: ['LOGIN', 'SUPERUSER'] }],
        nodes: [{ name: 'n1', host_ids: ['host-1', 'host-2'] }],
        backup_config: backupConfig
      }
    })
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    expect(JSON.stringify(res.body)).not.toContain(REPO_KEY)
    await waitTask(h1, res.body.task.task_id as string, 120_000)

    // The anchor's layout: <base_path>/databases/<database_id>/<repo id>/<node_name>.
    const nodeRepo = join(repo, 'databases', 'bk', 'local', 'n1')
    expect((await stat(join(nodeRepo, 'backup', 'db', 'backup.info'))).isFile()).toBe(true)
    const config = await configFile(h1)
    expect((await stat(config)).mode & 0o777).toBe(0o600)
    expect(await readFile(config, 'utf8')).toContain(`repo1-path=${nodeRepo}`)

    for (const host of ['host-1', 'host-2']) {
      const [{ archive_command: command }] = await sql(h1, host, 'SHOW archive_command')
      expect(command).toMatch(/pgbackrest' --config='.*pgbackrest\.conf' --stanza=db archive-push %p$/)
    }
    await sql(h1, 'host-1', 'CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 1000); SELECT pg_switch_wal()')
    await until('a WAL segment archived by the primary', async () => {
      const [row] = await sql<{ archived_count: string, failed_count: string }>(h1, 'host-1', 'SELECT archived_count, failed_count FROM pg_stat_archiver')
      return Number(row?.archived_count) >= 2
    }, 30_000, 500)
    const [replica] = await sql<{ archived_count: string }>(h1, 'host-2', 'SELECT archived_count FROM pg_stat_archiver')
    expect(Number(replica?.archived_count)).toBe(0)
    expect((await readdirNames(join(nodeRepo, 'archive', 'db'))).some(n => /^15-\d+$/.test(n))).toBe(true)
  }, 180_000)

  it('takes a full then an incremental backup on the primary, streaming pgBackRest into the task log', async () => {
    const full = await ok(h2.post('/v1/databases/bk/nodes/n1/backups', { type: 'full', annotations: { reason: 'test' } }), 'full backup')
    expect(full.task.type).toBe('node_backup')
    // The primary shows backing_up while it runs (asked through the replica's host).
    const seen = await until('the primary backing_up', async () => {
      const i = (await instances(h2)).find(x => x.host_id === 'host-1')
      if (i?.state === 'backing_up') return 'backing_up'
      const t = (await h2.get(`/v1/databases/bk/tasks/${full.task.task_id as string}`)).body
      return t.status === 'completed' ? 'finished first' : undefined
    }, 60_000, 50)
    expect(seen).toBe('backing_up')
    const done = await waitTask(h2, full.task.task_id as string)
    expect(done.host_id).toBe('host-1')
    expect(done.instance_id).toBe((await instances(h1)).find(i => i.host_id === 'host-1')?.id)
    const log = await taskLog(h2, full.task.task_id as string)
    expect(log).toMatch(/host-1 .*backup command begin/)
    expect(log).toMatch(/host-1 .*new backup label = \d{8}-\d{6}F/)
    expect(log).not.toContain(REPO_KEY)
    expect((await instances(h1)).find(x => x.host_id === 'host-1')?.state).toBe('available')

    await sql(h1, 'host-1', 'INSERT INTO items SELECT generate_series(1001, 2000)')
    const incr = await ok(h1.post('/v1/databases/bk/nodes/n1/backups', { type: 'incr' }), 'incremental backup')
    await waitTask(h1, incr.task.task_id as string)
    const backups = await backupsInRepository(h1)
    expect(backups.map(b => b.type)).toEqual(['full', 'incr'])
    expect(backups[0]?.annotation).toEqual({ reason: 'test' })
  }, 180_000)

  it("refuses backups of an unknown node, with bad options, and of a node without backup_config, with the anchor's messages", async () => {
    const unknown = await h1.post('/v1/databases/bk/nodes/n9/backups', { type: 'full' })
    expect([unknown.status, unknown.body.name, unknown.body.message]).toEqual([400, 'invalid_input', 'node n9 not found'])
    const option = await h1.post('/v1/databases/bk/nodes/n1/backups', { type: 'full', backup_options: { 'cmd-ssh': '/bin/sh' } })
    expect([option.status, option.body.message]).toEqual([400, "backup_options[cmd-ssh]: option 'cmd-ssh' runs a command and is not allowed"])
    const path = await h1.post('/v1/databases/bk/nodes/n1/backups', { type: 'full', backup_options: { 'log-path': '/tmp' } })
    expect([path.status, path.body.message]).toEqual([400, "backup_options[log-path]: option 'log-path' names a path and is not allowed"])
    const type = await h1.post('/v1/databases/bk/nodes/n1/backups', { type: 'weekly' })
    expect([type.status, type.body.name]).toEqual([400, 'invalid_input'])
    expect(type.body.message).toMatch(/^type: /)
  })

  it('takes a backup with the CLI, following its task to the end', async () => {
    const res = await cli(['db', 'backup', 'bk', 'n1', '--type', 'diff', '--annotation', 'by=cli', '--wait', '--server', h2.url], { timeoutMs: 90_000 })
    expect(res.code, res.stderr + res.stdout).toBe(0)
    expect(res.stdout).toMatch(/backup command end: completed successfully/)
    expect((await backupsInRepository(h1)).map(b => b.type)).toEqual(['full', 'incr', 'diff'])
    expect((await cli(['db', 'backup', 'bk', 'n1', '--type', 'weekly', '--server', h2.url])).code).toBe(2)
  }, 120_000)

  it('runs a schedule on the primary\'s host only, one backup per tick, and applies retention', async () => {
    await updateSpec(h1, 'bk', spec => {
      spec.backup_config.schedules = [{ id: 'often', type: 'full', cron_expression: '*/15 * * * * *' }]
    })
    const scheduled = async (): Promise<any[]> => {
      const tasks = (await h2.get('/v1/databases/bk/tasks?limit=100')).body.tasks as any[]
      return tasks.filter(t => t.type === 'node_backup' && t.status === 'completed' && t.created_at > startedAt)
    }
    const startedAt = new Date().toISOString()
    const tasks = await until('two scheduled backups', async () => {
      const done = await scheduled()
      return done.length >= 2 ? done : undefined
    }, 90_000, 500)
    const ticks = new Set<string>()
    for (const t of tasks) {
      expect(t.host_id).toBe('host-1')
      const log = await taskLog(h2, t.task_id as string)
      const tick = /scheduled backup often \(tick ([^)]+)\)/.exec(log)?.[1]
      expect(tick, log).toBeDefined()
      expect(ticks.has(tick ?? '')).toBe(false)
      ticks.add(tick ?? '')
      for (const line of log.split('\n')) expect(line.startsWith('host-1 '), line).toBe(true)
    }
    // retention_full 1 (count): each new full backup expires the one before, incrementals on it included.
    const backups = await backupsInRepository(h1)
    expect(backups.filter(b => b.type === 'full')).toHaveLength(1)
    expect(backups.filter(b => b.type === 'incr')).toHaveLength(0)
    await updateSpec(h1, 'bk', spec => { delete spec.backup_config.schedules })
  }, 180_000)

  it('turns archiving off again when backup_config is removed', async () => {
    await updateSpec(h1, 'bk', spec => { delete spec.backup_config })
    await until('archive_command back to the no-op on both instances', async () => {
      for (const host of ['host-1', 'host-2']) {
        const [{ archive_command: command }] = await sql(h1, host, 'SHOW archive_command')
        if (command !== '/bin/true') return false
      }
      return true
    }, 60_000, 500)
    await expect(stat(await configFile(h1))).rejects.toThrow()
    const refused = await h1.post('/v1/databases/bk/nodes/n1/backups', { type: 'full' })
    expect([refused.status, refused.body.message]).toEqual([400, 'backups are not configured for this database node'])
  }, 90_000)

  it('keeps the repository key out of responses, logs, task logs and process arguments', async () => {
    for (const path of ['/v1/databases/bk', '/v1/databases', '/v1/databases/bk/tasks?limit=100']) {
      expect(JSON.stringify((await h1.get(path)).body)).not.toContain(REPO_KEY)
    }
    const tasks = (await h1.get('/v1/databases/bk/tasks?limit=100')).body.tasks as Array<{ task_id: string }>
    for (const t of tasks) expect(await taskLog(h1, t.task_id)).not.toContain(REPO_KEY)
    for (const d of [h1, h2]) expect(d.output).not.toContain(REPO_KEY)
    const { stdout } = await exec('ps', ['-eo', 'args'])
    expect(stdout).not.toContain(REPO_KEY)
  })
})

describe('scheduled backups across a failover', () => {
  let h1: DaemonProcess
  let h2: DaemonProcess

  beforeAll(async () => {
    cluster = await TestCluster.create('backups-failover')
    // host-3 runs no Postgres: it is the third vote of the lease's majority.
    ;[h1, h2] = await cluster.initAndJoin(3, i => i === 3 ? { reconcile: false } : {}) as [DaemonProcess, DaemonProcess]
    const repo = join(cluster.root, 'repo')
    await mkdir(repo, { mode: 0o700 })
    const { stdout } = await exec('id', ['-u', 'postgres'])
    await chown(repo, Number(stdout.trim()), Number(stdout.trim()))
    const res = await h2.post('/v1/databases', {
      id: 'bk',
      spec: {
        database_name: 'bk',
        database_users: [{ username: 'admin', password: PASSWORD, db_owner: true, attributes: ['LOGIN', 'SUPERUSER'] }],
        nodes: [{ name: 'n1', host_ids: ['host-1', 'host-2'] }],
        backup_config: { repositories: [{ id: 'r', type: 'posix', base_path: repo }], schedules: [{ id: 'often', type: 'full', cron_expression: '*/15 * * * * *' }] }
      }
    })
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    await waitTask(h2, res.body.task.task_id as string, 120_000)
  }, 180_000)

  afterAll(async () => { await cluster?.destroy() })

  it('runs each tick once: on the primary\'s host, then on the new primary\'s once the old one died', async () => {
    const scheduled = async (): Promise<Array<{ host: string, tick: string }>> => {
      const tasks = (await h2.get('/v1/databases/bk/tasks?limit=100')).body.tasks as any[]
      const out: Array<{ host: string, tick: string }> = []
      for (const t of tasks.filter(t => t.type === 'node_backup' && t.status === 'completed')) {
        const tick = /scheduled backup often \(tick ([^)]+)\)/.exec(await taskLog(h2, t.task_id as string))?.[1]
        if (tick !== undefined) out.push({ host: t.host_id as string, tick })
      }
      return out.sort((a, b) => a.tick.localeCompare(b.tick))
    }
    await until('a scheduled backup on host-1', async () => (await scheduled()).some(b => b.host === 'host-1'), 60_000, 1000)

    // host-1 dies, daemon and Postgres (its postmaster leads its own process group).
    const id = (await instances(h2)).find(i => i.host_id === 'host-1')?.id ?? 'none'
    const pid = Number((await readFile(join(cluster?.root ?? '', 'host-1', 'instances', id, 'pgdata', 'postmaster.pid'), 'utf8')).split('\n')[0])
    await h1.stop('SIGKILL')
    process.kill(-pid, 'SIGKILL')
    const diedAt = new Date().toISOString()

    const backups = await until('two scheduled backups on host-2', async () => {
      const all = await scheduled()
      return all.filter(b => b.host === 'host-2').length >= 2 ? all : undefined
    }, 120_000, 1000)
    // Every tick from the first to the last, 15 s apart, backed up exactly once; host-2's only after host-1 died.
    // Across the failover ticks that went by unseen make one backup: 30 s there if the takeover took over 15 s.
    const ticks = backups.map(b => Date.parse(b.tick))
    const firstOnHost2 = backups.findIndex(b => b.host === 'host-2')
    for (let i = 1; i < ticks.length; i++) {
      const gap = ticks[i]! - ticks[i - 1]!
      if (i === firstOnHost2) expect([15_000, 30_000], JSON.stringify(backups)).toContain(gap)
      else expect(gap, JSON.stringify(backups)).toBe(15_000)
    }
    expect(backups.slice(0, firstOnHost2).every(b => b.host === 'host-1'), JSON.stringify(backups)).toBe(true)
    expect(backups.slice(firstOnHost2).every(b => b.host === 'host-2'), JSON.stringify(backups)).toBe(true)
    expect(Date.parse(backups[firstOnHost2]!.tick)).toBeGreaterThan(Date.parse(diedAt) - 15_000)
  }, 240_000)
})

async function readdirNames (dir: string): Promise<string[]> {
  const { readdir } = await import('node:fs/promises')
  return await readdir(dir)
}
