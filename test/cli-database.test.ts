// The CLI with a real database (process orchestrator, local PostgreSQL): --wait follows a task's log to its end,
// `db psql` runs psql against a node's primary, switchover moves the primary, Ctrl-C stops following and not the
// task, a canceled task exits 4, `task logs --follow` follows a task some other command started.
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, TestCluster, until, untilEveryHostKnowsEvery } from './helpers/cluster.js'
import { cli, cliJson, startCli } from './helpers/cli.js'

let cluster: TestCluster | undefined
let hosts: DaemonProcess[]
let servers: string

const SPEC = `database_name: app
database_users:
  - { username: admin, password: secret, db_owner: true, attributes: [LOGIN] }
nodes:
  - { name: n1, host_ids: [host-1, host-2] }
`

interface Db { state: string, instances: Array<{ id: string, host_id: string, node_name: string, state: string, postgres?: { role?: string } }> }

const roles = async (): Promise<string[]> => {
  const db = await cliJson<Db>(['db', 'get', 'app', '--server', servers])
  return db.instances.map(i => `${i.host_id} ${i.postgres?.role ?? '-'} ${i.state}`).sort()
}

describe('pgmesh with a real database', () => {
  beforeAll(async () => {
    cluster = await TestCluster.create('cli-db', { logLevel: 'info' })
    // host-3 runs no instances: a database placed on it stays creating, for the tests of Ctrl-C and cancel.
    hosts = await cluster.initAndJoin(3, i => i === 3 ? { reconcile: false } : {})
    servers = hosts.slice(0, 2).map(h => h.url).join(',')
    await untilEveryHostKnowsEvery(hosts)
  })

  afterEach((context) => {
    if (context.task.result?.state === 'fail') console.log(cluster?.problems())
  })

  afterAll(async () => {
    await cluster?.destroy()
  })

  it('creates a database with --wait: one line per log entry with time and host, exit 0 once completed', async () => {
    const file = await cluster!.writeFile('app.yaml', SPEC)
    const res = await cli(['db', 'create', '-f', file, '--id', 'app', '--wait', '--server', servers], { timeoutMs: 180_000 })
    expect(res.code, res.stderr + res.stdout).toBe(0)
    const lines = res.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^Following task \S+ \(create of app\); Ctrl-C stops following, not the task\.$/)
    for (const line of lines.slice(1, -1)) expect(line).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ host-[12] {2}\S/)
    expect(lines).toContainEqual(expect.stringMatching(/Z host-1 {2}task created\b/))
    expect(lines).toContainEqual(expect.stringMatching(/Z host-2 {2}creating instance app-n1-9ptayhma/))
    expect(lines.at(-1)).toMatch(/^Task \S+ completed after \d+\.\d s\.$/)
    expect(res.stderr).toBe('')
    expect(await roles()).toEqual(['host-1 primary available', 'host-2 replica available'])

    const status = await cli(['cluster', 'status', '--server', servers])
    expect(status.stdout).toMatch(/\nDatabase app: available\nNODE +INSTANCE +HOST +ROLE +STATE +ADDRESS +SUBSCRIPTIONS\nn1 +app-n1-689qacsi +host-1 +primary +available +127\.0\.0\.1:\d+ +-\nn1 +app-n1-9ptayhma +host-2 +replica +available +127\.0\.0\.1:\d+ +-\n/)
  })

  it('runs psql against the node\'s primary, and tells where every instance is reached', async () => {
    const res = await cli(['db', 'psql', 'app', '--server', servers, '--', '-tAc', 'SELECT current_user, current_database(), pg_is_in_recovery()'], { env: { PGPASSWORD: 'secret' } })
    expect(res.code, res.stderr).toBe(0)
    expect(res.stdout).toBe('admin|app|f\n')
    const failing = await cli(['db', 'psql', 'app', '--server', servers, '--', '-c', 'SELECT nope'], { env: { PGPASSWORD: 'secret' } })
    expect(failing.code).toBe(1)
    expect(failing.stderr).toContain('column "nope" does not exist')
    expect((await cli(['db', 'psql', 'app', '--node', 'n9', '--server', servers])).stderr).toBe('error: database app has no node n9 (nodes: n1)\n')

    const info = await cliJson<{ endpoints: Array<{ role: string, host_id: string, dsn: string }> }>(['db', 'connect-info', 'app', '--server', servers])
    expect(info.endpoints.map(e => `${e.host_id} ${e.role}`)).toEqual(['host-1 primary', 'host-2 replica'])
    expect(info.endpoints[0]?.dsn).toMatch(/^host=127\.0\.0\.1 port=\d+ dbname=app user=admin$/)
  })

  it('switches over with --wait and restarts an instance with --wait', async () => {
    const res = await cli(['db', 'switchover', 'app', 'n1', '--candidate', 'app-n1-9ptayhma', '--wait', '--server', servers], { timeoutMs: 120_000 })
    expect(res.code, res.stderr + res.stdout).toBe(0)
    expect(res.stdout).toMatch(/^Following task \S+ \(switchover of app\)/)
    await until('host-2 primary', async () => (await roles()).join() === 'host-1 replica available,host-2 primary available', 30_000, 500)

    const restart = await cli(['instance', 'restart', 'app', 'app-n1-689qacsi', '--wait', '-o', 'json', '--server', servers], { timeoutMs: 120_000 })
    expect(restart.code, restart.stderr).toBe(0)
    expect(JSON.parse(restart.stdout)).toMatchObject({ type: 'restart_instance', status: 'completed' })
    // With -o json the log goes to stderr and stdout holds the finished task alone.
    expect(restart.stderr).toMatch(/^Following task/)
  })

  it('Ctrl-C stops following and leaves the task; a task canceled while task logs --follow follows it exits 4', async () => {
    const file = await cluster!.writeFile('stuck.yaml', 'database_name: stuck\nnodes: [{ name: n1, host_ids: [host-3] }]\n')
    const h1 = hosts[0]?.url ?? ''
    const waiting = startCli(['db', 'create', '-f', file, '--id', 'stuck', '--wait', '--server', h1])
    const taskId = await until('the create task', () => /Following task (\S+)/.exec(waiting.stdout())?.[1], 20_000, 100)
    waiting.child.kill('SIGINT')
    const stopped = await waiting.done
    expect(stopped.code).toBe(130)
    expect(stopped.stderr).toBe(`\nStopped following; task ${taskId} goes on. Follow it again: pgmesh task logs ${taskId} --follow\n`)
    expect((await cliJson<{ status: string }>(['task', 'get', taskId, '--server', h1])).status).toMatch(/^(pending|running)$/)

    const follower = startCli(['task', 'logs', taskId, '--follow', '--server', h1])
    await until('the follower to print the log', () => follower.stdout().includes('task created'), 20_000, 100)
    const canceled = await cli(['task', 'cancel', taskId, '--db', 'stuck', '--server', h1])
    expect(canceled.code, canceled.stderr).toBe(0)
    const followed = await follower.done
    expect(followed.code, followed.stderr + followed.stdout).toBe(4)
    expect(followed.stdout).toContain('task successfully canceled')
    expect(followed.stderr).toMatch(/^error: task \S+ \(create\) canceled after \d+\.\d s\n/)
  })

  it('follows an update some other command started, then deletes the database with --wait', async () => {
    const file = join(cluster!.root, 'app-2.yaml')
    await writeFile(file, `${SPEC}postgresql_conf: { work_mem: 8MB }\n`)
    const started = await cliJson<{ task: { task_id: string } }>(['db', 'update', 'app', '-f', file, '--server', servers])
    const followed = await cli(['task', 'logs', started.task.task_id, '--follow', '--server', servers], { timeoutMs: 120_000 })
    expect(followed.code, followed.stderr + followed.stdout).toBe(0)
    expect(followed.stdout).toMatch(/\nTask \S+ completed/)

    const deleted = await cli(['db', 'delete', 'app', '--wait', '--server', servers], { timeoutMs: 120_000 })
    expect(deleted.code, deleted.stderr + deleted.stdout).toBe(0)
    expect((await cli(['db', 'get', 'app', '--server', servers])).code).toBe(3)
  })
})
