// Backup and restore benchmark (issue 13): a database of BENCH_SCALE pgbench scale (70 ≈ 1 GB), a full backup and an
// in-place restore through pgmesh (request to task completed) next to the same pgBackRest commands run by hand on the
// same data and the same posix repository: `pgbackrest backup --type=full` with the instance's own config, and
// `pgbackrest restore --type=immediate` into a scratch data directory followed by starting that server until it is
// promoted (what pgmesh's restore does besides: stopping and starting the instance, renaming, resetting replication).
// Prints each time and the overhead ratio (target ≤ 1.05×). Runs alternate pgmesh and by hand, BENCH_RUNS times.
import { execFile, spawn } from 'node:child_process'
import { chown, mkdir, readdir, rm, stat } from 'node:fs/promises'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { type DaemonProcess, TestCluster, queryInstance, until } from '../../test/helpers/cluster.js'
import { ok } from '../../test/helpers/specs.js'

const exec = promisify(execFile)
const SCALE = Number(process.env.BENCH_SCALE ?? 70)
const RUNS = Number(process.env.BENCH_RUNS ?? 1)
const PASSWORD = 'bench-password'

async function waitTask (d: DaemonProcess, taskId: string): Promise<void> {
  await until(`task ${taskId}`, async () => {
    const t = (await d.get(`/v1/databases/bench/tasks/${taskId}`)).body
    if (t.status === 'failed' || t.status === 'canceled') throw new Error(`task ${t.status as string}: ${t.error as string}`)
    return t.status === 'completed'
  }, 3_600_000, 100)
}

/** A command as the postgres OS user, to completion. */
async function asPostgres (args: string[]): Promise<string> {
  return await new Promise((resolve, reject) => {
    const child = spawn('runuser', ['-u', 'postgres', '--', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (b: Buffer) => { out += b.toString() })
    child.stderr.on('data', (b: Buffer) => { out += b.toString() })
    child.once('close', code => { code === 0 ? resolve(out) : reject(new Error(`${args.join(' ')} exited ${String(code)}: ${out.slice(-2000)}`)) })
  })
}

/** Seconds `what` took; its name goes to stderr first, so a slow step shows which it is. */
async function timed (what: () => Promise<unknown>, name = ''): Promise<number> {
  if (name !== '') process.stderr.write(`${new Date().toISOString()} ${name}\n`)
  const started = performance.now()
  await what()
  return (performance.now() - started) / 1000
}

const cluster = await TestCluster.create('bench-backup')
try {
  const [h1] = await cluster.initAndJoin(1) as [DaemonProcess]
  const postgresUid = Number((await exec('id', ['-u', 'postgres'])).stdout.trim())
  const repo = join(cluster.root, 'repo')
  await mkdir(repo, { mode: 0o700 })
  await chown(repo, postgresUid, postgresUid)
  const created = await ok(h1.post('/v1/databases', {
    id: 'bench',
    spec: {
      database_name: 'bench',
      database_users: [{ username: 'admin', password: PASSWORD, db_owner: true, attributes: ['LOGIN', 'SUPERUSER'] }],
      nodes: [{ name: 'n1', host_ids: ['host-1'] }],
      backup_config: { repositories: [{ id: 'local', type: 'posix', base_path: repo }] }
    }
  }), 'create')
  await waitTask(h1, created.task.task_id as string)
  const instanceId = (await readdir(join(cluster.root, 'host-1', 'instances')))[0] ?? ''
  const instanceDir = join(cluster.root, 'host-1', 'instances', instanceId)
  const conf = join(instanceDir, 'pgbackrest.conf')
  const db = (await h1.get('/v1/databases/bench')).body
  const port = db.instances[0].connection_info.port as number
  const major = (await readdir('/usr/lib/postgresql')).sort().at(-1) ?? '15'
  const bin = `/usr/lib/postgresql/${major}/bin`

  const fillSeconds = await timed(async () => {
    await exec(`${bin}/pgbench`, ['-i', '-q', '-s', String(SCALE), '-h', '127.0.0.1', '-p', String(port), '-U', 'admin', 'bench'], { env: { ...process.env, PGPASSWORD: PASSWORD }, maxBuffer: 64 * 1024 * 1024 })
  })
  // The load's dirty pages written out first: otherwise the first backup's immediate checkpoint (start-fast) pays
  // for them and the one after it does not.
  await queryInstance(h1, 'bench', () => true, { user: 'admin', password: PASSWORD }, 'CHECKPOINT')
  // And the load's WAL archived: a backup waits for its own last segment to be archived, so the first backup after a
  // load would otherwise wait for the whole archive backlog, which the one after it does not.
  const [{ wal }] = await queryInstance<{ wal: string }>(h1, 'bench', () => true, { user: 'admin', password: PASSWORD }, 'SELECT pg_walfile_name(pg_switch_wal()) AS wal') as [{ wal: string }]
  await until('the load\'s WAL archived', async () => {
    const [row] = await queryInstance<{ last: string | null }>(h1, 'bench', () => true, { user: 'admin', password: PASSWORD }, 'SELECT last_archived_wal AS last FROM pg_stat_archiver')
    return row?.last != null && row.last >= wal
  }, 3_600_000, 200)
  const [{ size }] = await queryInstance<{ size: string }>(h1, 'bench', () => true, { user: 'admin', password: PASSWORD }, 'SELECT pg_database_size(current_database()) AS size') as [{ size: string }]
  console.log(`database: pgbench scale ${SCALE}, ${(Number(size) / 1e6).toFixed(0)} MB (filled in ${fillSeconds.toFixed(1)} s); load average ${loadavg().map(l => l.toFixed(1)).join(' ')}`)

  const rows: Array<{ what: string, pgmesh: number, byHand: number }> = []
  for (let run = 1; run <= RUNS; run++) {
    // Backup: the same full backup of the same data into the same repository.
    const backupThroughPgmesh = async (): Promise<number> => await timed(async () => {
      const res = await ok(h1.post('/v1/databases/bench/nodes/n1/backups', { type: 'full' }), 'backup')
      await waitTask(h1, res.task.task_id as string)
    }, 'backup through pgmesh')
    const backupByHand = async (): Promise<number> => await timed(async () => {
      await asPostgres(['pgbackrest', `--config=${conf}`, '--stanza=db', '--log-timestamp=n', '--type=full', 'backup'])
    }, 'backup by hand')
    // Alternating which goes first, so neither always meets the warmer page cache.
    let pgmeshBackup: number
    let byHandBackup: number
    if (run % 2 === 1) {
      pgmeshBackup = await backupThroughPgmesh()
      byHandBackup = await backupByHand()
    } else {
      byHandBackup = await backupByHand()
      pgmeshBackup = await backupThroughPgmesh()
    }
    rows.push({ what: `backup (run ${run})`, pgmesh: pgmeshBackup, byHand: byHandBackup })

    // Restore by hand: the latest backup into a scratch data directory, then that server until it is promoted
    // (archiving off: it must not push a new timeline into the node's repository).
    const scratch = join(cluster.root, 'scratch')
    await rm(scratch, { recursive: true, force: true })
    await mkdir(join(scratch, 'pgdata'), { recursive: true, mode: 0o700 })
    await chown(scratch, postgresUid, postgresUid)
    await chown(join(scratch, 'pgdata'), postgresUid, postgresUid)
    const scratchPort = port + 1000
    const byHandRestore = await timed(async () => {
      await asPostgres(['pgbackrest', `--config=${conf}`, '--stanza=db', '--log-timestamp=n', `--pg1-path=${join(scratch, 'pgdata')}`, '--type=immediate', '--target-action=promote', 'restore'])
      await asPostgres([`${bin}/pg_ctl`, 'start', '-w', '-s', '-D', join(scratch, 'pgdata'), '-l', join(scratch, 'log'),
        '-o', `-p ${scratchPort} -k ${scratch} -c listen_addresses='' -c archive_mode=off -c shared_preload_libraries=''`])
      // Promotion removes the recovery.signal pgBackRest wrote (the copied pg_hba lets no local login in to ask).
      await until('the scratch server promoted', async () => await stat(join(scratch, 'pgdata', 'recovery.signal')).then(() => false, () => true), 3_600_000, 50)
    }, 'restore by hand')
    await asPostgres([`${bin}/pg_ctl`, 'stop', '-m', 'immediate', '-s', '-D', join(scratch, 'pgdata')])
    await rm(scratch, { recursive: true, force: true })
    const pgmeshRestore = await timed(async () => {
      const res = await ok(h1.post('/v1/databases/bench/restore', {
        restore_config: { source_database_id: 'bench', source_node_name: 'n1', source_database_name: 'bench', repository: { id: 'local', type: 'posix', base_path: repo }, restore_options: { type: 'immediate' } }
      }), 'restore')
      await waitTask(h1, res.task.task_id as string)
    }, 'restore through pgmesh')
    rows.push({ what: `restore (run ${run})`, pgmesh: pgmeshRestore, byHand: byHandRestore })
    // The restore took the node's backup_config away (as the anchor); the next run backs up into the same repository.
    if (run < RUNS) {
      const spec = (await h1.get('/v1/databases/bench')).body.spec
      spec.backup_config = { repositories: [{ id: 'local', type: 'posix', base_path: repo }] }
      const updated = await ok(h1.post('/v1/databases/bench', { spec }), 'backup_config again')
      await waitTask(h1, updated.task.task_id as string)
    }
  }
  console.log('what                pgmesh s   by hand s   ratio')
  for (const r of rows) console.log(`${r.what.padEnd(18)}  ${r.pgmesh.toFixed(1).padStart(8)}  ${r.byHand.toFixed(1).padStart(10)}  ${(r.pgmesh / r.byHand).toFixed(3).padStart(6)}×`)
  console.log(`load average after: ${loadavg().map(l => l.toFixed(1)).join(' ')}`)
} finally {
  await cluster.destroy()
}
