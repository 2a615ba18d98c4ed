import type { Command } from 'commander'
import { clientAction, withClientOptions } from './context.js'
import { UsageError } from './errors.js'
import { machine, table } from './output.js'
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
