import type { DatabaseSummary, Host, Instance } from '@pgmesh/client'
import type { Command } from 'commander'
import { clientAction, serverList, withClientOptions } from './context.js'
import { UsageError } from './errors.js'
import { type Painter, cell, fields, machine, paintState, stateCell, table } from './output.js'
import { startedTask, withWait } from './wait.js'

export function hostsTable (hosts: readonly Host[], paint: Painter): string {
  return table(['HOST', 'STATE', 'ORCHESTRATOR', 'API', 'CLIENT ADDRESSES', 'VERSION'], hosts.map(h => [
    h.id,
    stateCell(h.status.state, paint),
    h.orchestrator,
    cell(h.api_url),
    cell(h.client_addresses.join(',')),
    cell(h.version)
  ]), paint)
}

/** A primary's subscriptions, `n2 replicating`, or `-`. */
function subscriptions (i: Instance, paint: Painter): string {
  const subs = i.spock?.subscriptions ?? []
  if (subs.length === 0) return '-'
  return subs.map(s => `${s.provider_node} ${paintState(s.status, paint)}`).join(', ')
}

/**
 * Every instance of a database, patronictl-list-like: node, instance, host, role, state, address, subscriptions.
 * Replication lag is not reported by the API yet, so there is no column for it.
 */
export function instancesTable (instances: readonly Instance[], paint: Painter): string {
  return table(['NODE', 'INSTANCE', 'HOST', 'ROLE', 'STATE', 'ADDRESS', 'SUBSCRIPTIONS'], instances.map(i => [
    i.node_name,
    i.id,
    i.host_id,
    cell(i.postgres?.role),
    stateCell(i.state, paint),
    i.connection_info === undefined ? '-' : `${i.connection_info.addresses[0] ?? '?'}:${i.connection_info.port}`,
    subscriptions(i, paint)
  ]), paint)
}

function statusText (clusterId: string, hosts: readonly Host[], databases: readonly DatabaseSummary[], paint: Painter): string {
  const healthy = hosts.filter(h => h.status.state === 'healthy').length
  const parts = [
    `Cluster ${paint.bold(clusterId)}: ${hosts.length} host${hosts.length === 1 ? '' : 's'} (${healthy} healthy), ${databases.length} database${databases.length === 1 ? '' : 's'}\n`,
    '\n' + hostsTable(hosts, paint)
  ]
  for (const db of [...databases].sort((a, b) => a.id.localeCompare(b.id))) {
    parts.push(`\nDatabase ${paint.bold(db.id)}: ${paintState(db.state, paint)}\n`)
    if (db.instances.length > 0) parts.push(instancesTable(db.instances, paint))
    for (const e of db.spec_errors ?? []) parts.push(`  ${paint.red('spec error:')} ${e}\n`)
    if ((db.conflicts?.length ?? 0) > 0) parts.push(`  ${paint.yellow(`${db.conflicts?.length ?? 0} concurrent edit conflict(s)`)}: pgmesh db conflicts ${db.id}\n`)
    for (const i of db.instances) if (i.error !== undefined) parts.push(`  ${i.id}: ${paint.red(i.error)}\n`)
  }
  return parts.join('')
}

export function registerClusterCommands (program: Command): void {
  const cluster = program.command('cluster').description('initialize, join and inspect the cluster')

  withClientOptions(cluster.command('init'))
    .description('initialize a new cluster on the host --server names; prints the join token')
    .option('--cluster-id <id>', 'the cluster\'s id (default: a random UUID)')
    .addHelpText('after', '\nExample:\n  pgmesh cluster init --cluster-id prod --server http://10.0.0.1:3000\n')
    .action(clientAction(async (ctx, opts) => {
      const token = await ctx.client.initCluster(opts.clusterId as string | undefined)
      const out = machine(ctx.format, token)
      if (out !== undefined) return ctx.out(out)
      ctx.out(`Cluster initialized on ${ctx.client.server}.\n`)
      ctx.out(fields([['token', token.token], ['server urls', token.server_urls.join(',')]]))
      ctx.out(`Join another host: pgmesh cluster join --server <its URL> --token ${token.token} --from ${token.server_urls.join(',')}\n`)
    }))

  withClientOptions(cluster.command('join'))
    .description('join the host --server names (a new, uninitialized host) to a cluster')
    .requiredOption('--token <token>', 'the cluster\'s join token (pgmesh cluster join-token on any member)')
    .requiredOption('--from <urls>', 'API URL(s) of members to join through, comma separated')
    .addHelpText('after', '\nRun it against the joining host\'s own API.\n\nExample:\n  pgmesh cluster join --server http://10.0.0.2:3000 --token PGEDGE-… --from http://10.0.0.1:3000\n')
    .action(clientAction(async (ctx, opts) => {
      const from = serverList(opts.from as string)
      if (from.length === 0) throw new UsageError('--from needs at least one URL')
      await ctx.client.joinCluster({ token: opts.token as string, server_urls: from })
      const out = machine(ctx.format, { joined: true, server: ctx.client.server })
      if (out !== undefined) return ctx.out(out)
      ctx.out(`${ctx.client.server} joined the cluster.\n`)
    }))

  withClientOptions(cluster.command('join-token'))
    .description('issue a token other hosts join this cluster with (reusable until it expires or is revoked)')
    .option('--ttl <duration>', 'how long it is valid, e.g. 1h, 24h, 7d (default: 24h)')
    .option('--revoke-all', 'instead: revoke every outstanding join token')
    .addHelpText('after', '\nExample:\n  pgmesh cluster join-token -o json\n  pgmesh cluster join-token --revoke-all\n')
    .action(clientAction(async (ctx, opts) => {
      if (opts.revokeAll === true) {
        const res = await ctx.client.revokeJoinTokens()
        return ctx.out(machine(ctx.format, res) ?? `${res.revoked} join token(s) revoked.\n`)
      }
      const token = await ctx.client.joinToken(opts.ttl as string | undefined)
      const out = machine(ctx.format, token)
      if (out !== undefined) return ctx.out(out)
      ctx.out(fields([['token', token.token], ['server urls', token.server_urls.join(',')]]))
    }))

  withClientOptions(cluster.command('status'))
    .description('the hosts with their health, and every database\'s nodes and instances (role, state, subscriptions)')
    .addHelpText('after', '\nExample:\n  pgmesh cluster status --server http://10.0.0.1:3000,http://10.0.0.2:3000\n')
    .action(clientAction(async (ctx) => {
      const [info, databases] = await Promise.all([ctx.client.cluster(), ctx.client.databases()])
      const out = machine(ctx.format, { cluster: info, databases })
      if (out !== undefined) return ctx.out(out)
      ctx.out(statusText(info.id, info.hosts, databases, ctx.paint))
    }))

  const hosts = program.command('hosts').description('list and remove the cluster\'s hosts (pgmesh hosts = pgmesh hosts list)')
  withClientOptions(hosts.command('list', { isDefault: true }))
    .description('the cluster\'s hosts with their health')
    .addHelpText('after', '\nExample:\n  pgmesh hosts -o yaml\n')
    .action(clientAction(async (ctx) => {
      const list = await ctx.client.hosts()
      const out = machine(ctx.format, { hosts: list })
      if (out !== undefined) return ctx.out(out)
      ctx.out(hostsTable(list, ctx.paint))
    }))

  withWait(withClientOptions(hosts.command('remove')))
    .description('remove a host from the cluster')
    .argument('<host-id>', 'the host to remove')
    .option('--force', 'remove it even if instances are placed on it')
    .addHelpText('after', '\nExample:\n  pgmesh hosts remove host-3 --force --wait\n')
    .action(clientAction(async (ctx, opts, hostId: string) => {
      const res = await ctx.client.removeHost(hostId, opts.force === true)
      await startedTask(ctx, res, opts.wait as boolean | undefined)
    }))
}
