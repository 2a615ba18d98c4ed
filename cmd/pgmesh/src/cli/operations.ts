import type { RestoreBody } from '@pgmesh/client'
import type { Command } from 'commander'
import { clientAction, withClientOptions } from './context.js'
import { UsageError } from './errors.js'
import { machine, table } from './output.js'
import { readSpecFile } from './spec-file.js'
import { startedTask, withWait } from './wait.js'

/** RFC 3339 with an offset, as the API takes it; checked here so a typo is a usage error, not a 400. */
function scheduledAt (value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(value) || Number.isNaN(Date.parse(value))) {
    throw new UsageError(`--scheduled-at ${value}: expected an RFC 3339 time such as 2026-01-31T22:00:00Z`)
  }
  return value
}

/** `key=value` arguments as a map; undefined when none were given. */
function pairs (flag: string, values: string[] | undefined): Record<string, string> | undefined {
  if (values === undefined || values.length === 0) return undefined
  const out: Record<string, string> = {}
  for (const value of values) {
    const at = value.indexOf('=')
    if (at <= 0) throw new UsageError(`${flag} ${value}: expected key=value`)
    out[value.slice(0, at)] = value.slice(at + 1)
  }
  return out
}

export function registerOperationCommands (program: Command, db: Command): void {
  withWait(withClientOptions(db.command('switchover')))
    .description('planned switchover of a node\'s primary to one of its replicas')
    .argument('<id>', 'database id')
    .argument('<node>', 'node name')
    .option('--candidate <instance-id>', 'the replica to promote (default: one the control plane picks)')
    .option('--scheduled-at <time>', 'RFC 3339 time in the future to switch over at')
    .addHelpText('after', '\nExample:\n  pgmesh db switchover storefront n1 --candidate storefront-n1-9ptayhma --wait\n')
    .action(clientAction(async (ctx, opts, id: string, node: string) => {
      const at = scheduledAt(opts.scheduledAt as string | undefined)
      const body = { ...(opts.candidate === undefined ? {} : { candidate_instance_id: opts.candidate as string }), ...(at === undefined ? {} : { scheduled_at: at }) }
      await startedTask(ctx, await ctx.client.switchover(id, node, body), opts.wait as boolean | undefined)
    }))

  withWait(withClientOptions(db.command('upgrade')))
    .description('move a database to a newer image of the version manifest; without an image, list the upgrades available')
    .argument('<id>', 'database id')
    .argument('[image]', 'the image to move to (one of those listed without it)')
    .addHelpText('after', '\nExample:\n  pgmesh db upgrade storefront pgmesh/postgres:15.20 --wait   (without the image: the upgrades available)\n')
    .action(clientAction(async (ctx, opts, id: string, image: string | undefined) => {
      if (image !== undefined) {
        await startedTask(ctx, await ctx.client.upgradeDatabase(id, image), opts.wait as boolean | undefined)
        return
      }
      const upgrades = (await ctx.client.database(id, { includeUpgrades: true })).available_upgrades ?? []
      ctx.out(machine(ctx.format, upgrades) ??
        (upgrades.length === 0 ? `no upgrade available for ${id}\n` : table(['IMAGE', 'POSTGRES', 'SPOCK'], upgrades.map(u => [u.image, u.postgres_version, u.spock_version ?? '']))))
    }))

  withWait(withClientOptions(db.command('failover')))
    .description('manual failover of a node to one of its replicas (refused on a healthy node without --skip-validation)')
    .argument('<id>', 'database id')
    .argument('<node>', 'node name')
    .option('--candidate <instance-id>', 'the replica to promote (default: one the control plane picks)')
    .option('--skip-validation', 'fail over even though the node is healthy')
    .addHelpText('after', '\nExample:\n  pgmesh db failover storefront n1 --skip-validation --wait\n')
    .action(clientAction(async (ctx, opts, id: string, node: string) => {
      const body = { ...(opts.candidate === undefined ? {} : { candidate_instance_id: opts.candidate as string }), ...(opts.skipValidation === true ? { skip_validation: true } : {}) }
      await startedTask(ctx, await ctx.client.failover(id, node, body), opts.wait as boolean | undefined)
    }))

  withWait(withClientOptions(db.command('backup')))
    .description('back up a node with pgBackRest, on its primary (the database needs a backup_config)')
    .argument('<id>', 'database id')
    .argument('<node>', 'node name')
    .option('--type <type>', 'full, diff or incr', 'full')
    .option('--annotation <key=value...>', 'annotations stored with the backup')
    .option('--option <name=value...>', 'pgBackRest options, names without --')
    .addHelpText('after', '\nExample:\n  pgmesh db backup storefront n1 --type incr --annotation reason=nightly --wait\n')
    .action(clientAction(async (ctx, opts, id: string, node: string) => {
      const type = opts.type as string
      if (type !== 'full' && type !== 'diff' && type !== 'incr') throw new UsageError(`--type ${type}: expected full, diff or incr`)
      const annotations = pairs('--annotation', opts.annotation as string[] | undefined)
      const options = pairs('--option', opts.option as string[] | undefined)
      const body = { type, ...(annotations === undefined ? {} : { annotations }), ...(options === undefined ? {} : { backup_options: options }) } as const
      await startedTask(ctx, await ctx.client.backupNode(id, node, body), opts.wait as boolean | undefined)
    }))

  withWait(withClientOptions(db.command('restore')))
    .description('restore nodes in place from a pgBackRest repository (every node unless --node); their backup_config goes')
    .argument('<id>', 'database id')
    .option('-f, --file <file>', 'a restore request ({restore_config, target_nodes?}) or a bare restore_config, JSON or YAML; - for standard input')
    .option('--repo <type:path>', 'the repository without a file: posix:/backups (keys only ever in a file, never in arguments)')
    .option('--repo-id <id>', 'the repository\'s id (its directory under base_path)')
    .option('--source-node <node>', 'the node whose backups to restore (default: the first --node, else n1)')
    .option('--source-database <id>', 'the database whose backups to restore (default: this one)')
    .option('--node <node...>', 'the nodes to restore (default: every node)')
    .option('--option <name=value...>', 'pgBackRest restore options, names without --: type=time target="2026-01-31 22:00:00+00", set=…')
    .option('--force', 'restore even while another task of the database runs')
    .addHelpText('after', '\nExample:\n  pgmesh db restore storefront --repo posix:/backups --repo-id local --source-node n1 --option type=immediate --wait\n' +
      '  pgmesh db restore storefront -f restore.yaml --node n2 --wait\n\nrestore.yaml:\n  source_database_id: storefront\n  source_node_name: n1\n' +
      '  source_database_name: storefront\n  repository: { id: local, type: posix, base_path: /backups }\n  restore_options: { type: time, target: "2026-01-31 22:00:00+00" }\n')
    .action(clientAction(async (ctx, opts, id: string) => {
      const file = opts.file === undefined ? undefined : await readSpecFile(opts.file as string)
      const body = await restoreBody(id, {
        file, repo: opts.repo, repoId: opts.repoId, sourceNode: opts.sourceNode, sourceDatabase: opts.sourceDatabase, nodes: opts.node,
        options: pairs('--option', opts.option as string[] | undefined)
      }, async () => (await ctx.client.database(id)).spec as { database_name?: string })
      const response = await ctx.client.restoreDatabase(id, body, { force: opts.force === true })
      if (opts.wait !== true && machine(ctx.format, response) === undefined) {
        ctx.out(`Node restores: ${response.node_tasks.map(t => `${t.node_name ?? ''} ${t.task_id}`).join(', ')}\n`)
      }
      await startedTask(ctx, response, opts.wait as boolean | undefined)
    }))

  const instance = program.command('instance').description('restart, stop and start one Postgres instance of a database')

  withWait(withClientOptions(instance.command('restart')))
    .description('restart an instance, now or at a scheduled time')
    .argument('<id>', 'database id')
    .argument('<instance>', 'instance id (pgmesh db get ID lists them)')
    .option('--scheduled-at <time>', 'RFC 3339 time in the future to restart at')
    .addHelpText('after', '\nExample:\n  pgmesh instance restart storefront storefront-n1-689qacsi --wait\n')
    .action(clientAction(async (ctx, opts, id: string, instanceId: string) => {
      const at = scheduledAt(opts.scheduledAt as string | undefined)
      await startedTask(ctx, await ctx.client.restartInstance(id, instanceId, at === undefined ? {} : { scheduled_at: at }), opts.wait as boolean | undefined)
    }))

  withWait(withClientOptions(instance.command('stop')))
    .description('stop an instance and keep it stopped (its port is kept)')
    .argument('<id>', 'database id')
    .argument('<instance>', 'instance id')
    .option('--force', 'pass force=true to the API')
    .addHelpText('after', '\nExample:\n  pgmesh instance stop storefront storefront-n1-9ptayhma --wait\n')
    .action(clientAction(async (ctx, opts, id: string, instanceId: string) => {
      await startedTask(ctx, await ctx.client.stopInstance(id, instanceId, { force: opts.force === true }), opts.wait as boolean | undefined)
    }))

  withWait(withClientOptions(instance.command('start')))
    .description('start a stopped instance')
    .argument('<id>', 'database id')
    .argument('<instance>', 'instance id')
    .option('--force', 'pass force=true to the API')
    .addHelpText('after', '\nExample:\n  pgmesh instance start storefront storefront-n1-9ptayhma --wait\n')
    .action(clientAction(async (ctx, opts, id: string, instanceId: string) => {
      await startedTask(ctx, await ctx.client.startInstance(id, instanceId, { force: opts.force === true }), opts.wait as boolean | undefined)
    }))
}

export interface RestoreFlags {
  file?: object | undefined
  repo?: string
  repoId?: string
  sourceNode?: string
  sourceDatabase?: string
  nodes?: string[]
  options?: Record<string, string> | undefined
}

/**
 * The restore request from `-f` (a request body, or a bare restore_config) or from flags; flags given beside a file
 * override it. `currentSpec` is asked only when the source database's name is needed (the database's own).
 */
export async function restoreBody (id: string, flags: RestoreFlags, currentSpec: () => Promise<{ database_name?: string }>): Promise<RestoreBody> {
  const fromFile = flags.file === undefined ? undefined : 'restore_config' in flags.file ? flags.file as RestoreBody : { restore_config: flags.file as RestoreBody['restore_config'] }
  if (fromFile === undefined && flags.repo === undefined) throw new UsageError('give the repository: -f restore.yaml, or --repo posix:/path')
  const config: Record<string, unknown> = { ...fromFile?.restore_config }
  if (flags.repo !== undefined) {
    const at = flags.repo.indexOf(':')
    const type = at < 0 ? '' : flags.repo.slice(0, at)
    const where = flags.repo.slice(at + 1)
    if (type !== 'posix' && type !== 'cifs') throw new UsageError(`--repo ${flags.repo}: expected posix:/path or cifs:/path (other repositories need keys: use -f)`)
    config.repository = { type, base_path: where, ...(flags.repoId === undefined ? {} : { id: flags.repoId }) }
  } else if (flags.repoId !== undefined && typeof config.repository === 'object' && config.repository !== null) {
    config.repository = { ...config.repository, id: flags.repoId }
  }
  const nodes = flags.nodes ?? fromFile?.target_nodes
  config.source_database_id = flags.sourceDatabase ?? config.source_database_id ?? id
  config.source_node_name = flags.sourceNode ?? config.source_node_name ?? nodes?.[0] ?? 'n1'
  if (flags.options !== undefined) config.restore_options = { ...config.restore_options as Record<string, string> | undefined, ...flags.options }
  if (config.source_database_name === undefined) {
    const name = config.source_database_id === id ? (await currentSpec()).database_name : undefined
    if (name === undefined) throw new UsageError('source_database_name is needed for another database\'s backups: give it in the file')
    config.source_database_name = name
  }
  return { restore_config: config as unknown as RestoreBody['restore_config'], ...(nodes === undefined ? {} : { target_nodes: nodes }) }
}
